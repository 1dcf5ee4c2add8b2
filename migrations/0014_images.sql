-- Images that came with a message (a photo someone sent, an image a tool read), scaled and
-- encoded for the model, kept with the message so later turns and replays show the same image.
-- `messages.images` counts them, so a conversation without images never reads this table.
ALTER TABLE messages ADD COLUMN images INTEGER NOT NULL DEFAULT 0;
CREATE TABLE message_images (
    message_id INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    position   INTEGER NOT NULL,
    media_type TEXT NOT NULL,
    label      TEXT NOT NULL,
    data       BLOB NOT NULL,
    PRIMARY KEY (message_id, position)
);
