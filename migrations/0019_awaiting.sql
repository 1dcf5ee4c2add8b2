-- Whether a conversation's last message is not a final answer (a person's message, a tool
-- result, or a model's tool call): kept by a trigger in the statement that stores each message,
-- so finding the turns a stop cut short reads only those conversations, however long the
-- history grows.
ALTER TABLE conversations ADD COLUMN awaiting INTEGER NOT NULL DEFAULT 0;

UPDATE conversations SET awaiting = 1 WHERE id IN (
    SELECT c.id FROM conversations c JOIN messages m
    ON m.id = (SELECT MAX(id) FROM messages WHERE conversation_id = c.id)
    WHERE m.role <> 'assistant' OR m.tool_calls IS NOT NULL
);

CREATE TRIGGER messages_set_awaiting AFTER INSERT ON messages BEGIN
    UPDATE conversations
    SET awaiting = (NEW.role <> 'assistant' OR NEW.tool_calls IS NOT NULL)
    WHERE id = NEW.conversation_id;
END;

CREATE INDEX conversations_awaiting ON conversations (id) WHERE awaiting = 1 AND closed_at IS NULL;
