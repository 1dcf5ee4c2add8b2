//! Chat bots and their durable queues: received updates (stored before the platform is told
//! they arrived), the outbox (delivered in order per chat), and direct-message pairing.

use sqlx::Row;

use sqlx::SqliteConnection;

use super::raw::{Columns, Db};
use super::writer::{Alone, Place};
use super::{Result, Store, not_found, touched};
use crate::domain::{Millis, now_millis};

#[derive(Debug, Clone, PartialEq)]
pub struct BotRecord {
    pub channel: String,
    pub platform: String,
    pub username: String,
    pub default_agent: String,
    /// The secret holding the token; `None` for the bot from the config file.
    pub token_secret: Option<String>,
    pub poll_offset: i64,
    pub commands_hash: String,
}

/// A stored update not yet answered.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingUpdate {
    pub update_id: i64,
    pub payload: String,
}

/// One message waiting in the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRow {
    pub id: i64,
    pub chat_id: String,
    pub thread_id: String,
    pub kind: String,
    pub text: String,
}

/// A message to put in the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct NewOutbox {
    pub chat_id: String,
    pub thread_id: String,
    pub kind: &'static str,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PairingRecord {
    pub platform: String,
    pub user_id: String,
    pub name: String,
    pub chat: String,
    pub code: String,
    pub expires_at: Millis,
}

fn bot_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<BotRecord> {
    Ok(BotRecord {
        channel: row.try_get("channel")?,
        platform: row.try_get("platform")?,
        username: row.try_get("username")?,
        default_agent: row.try_get("default_agent")?,
        token_secret: row.try_get("token_secret")?,
        poll_offset: row.try_get("poll_offset")?,
        commands_hash: row.try_get("commands_hash")?,
    })
}

impl Store {
    /// Records a bot (or updates its name, agent and token secret), keeping its offset.
    pub async fn upsert_bot(
        &self,
        channel: &str,
        platform: &str,
        username: &str,
        default_agent: &str,
        token_secret: Option<&str>,
    ) -> Result<BotRecord> {
        let now = now_millis();
        sqlx::query(
            "INSERT INTO bots (channel, platform, username, default_agent, token_secret, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6) \
             ON CONFLICT (channel) DO UPDATE SET username = excluded.username, \
             default_agent = excluded.default_agent, token_secret = excluded.token_secret, \
             updated_at = excluded.updated_at",
        )
        .bind(channel)
        .bind(platform)
        .bind(username)
        .bind(default_agent)
        .bind(token_secret)
        .bind(now)
        .execute(&self.write)
        .await?;
        self.bot(channel).await
    }

    pub async fn bot(&self, channel: &str) -> Result<BotRecord> {
        let row = sqlx::query("SELECT * FROM bots WHERE channel = $1")
            .bind(channel)
            .fetch_one(&mut *self.reader().await?)
            .await
            .map_err(|e| not_found(format!("bot {channel}"))(e.into()))?;
        bot_from_row(&row)
    }

    pub async fn list_bots(&self, platform: &str) -> Result<Vec<BotRecord>> {
        sqlx::query("SELECT * FROM bots WHERE platform = $1 ORDER BY channel")
            .bind(platform)
            .fetch_all(&mut *self.reader().await?)
            .await?
            .iter()
            .map(bot_from_row)
            .collect()
    }

    pub async fn delete_bot(&self, channel: &str) -> Result<()> {
        let done = sqlx::query("DELETE FROM bots WHERE channel = $1")
            .bind(channel)
            .execute(&self.write)
            .await?;
        touched(done.rows_affected(), || format!("bot {channel}"))
    }

    pub async fn set_bot_commands_hash(&self, channel: &str, hash: &str) -> Result<()> {
        sqlx::query("UPDATE bots SET commands_hash = $2 WHERE channel = $1")
            .bind(channel)
            .bind(hash)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Stores received updates and the offset that confirms them, in one transaction. Returns
    /// the updates that were new (a replayed update id is ignored).
    pub async fn store_updates(
        &self,
        channel: &str,
        updates: &[(i64, String)],
        next_offset: Option<i64>,
    ) -> Result<Vec<i64>> {
        let received = Received {
            channel: channel.to_string(),
            updates: updates.to_vec(),
            next_offset,
            at: now_millis(),
        };
        let alone = Alone::statements(received.updates.len() + usize::from(next_offset.is_some()));
        self.writer.write(alone, received, insert_updates).await
    }

    /// Like [`Store::store_updates`], queued now and committed with the first write somebody
    /// waits for (within 50 ms): for a poller that hands the updates on at once and waits for
    /// the returned future before it confirms them.
    pub fn queue_updates(
        &self,
        channel: &str,
        updates: Vec<(i64, String)>,
        next_offset: Option<i64>,
    ) -> impl Future<Output = Result<Vec<i64>>> + use<> {
        let alone = Alone::statements(updates.len() + usize::from(next_offset.is_some()));
        let received = Received {
            channel: channel.to_string(),
            updates,
            next_offset,
            at: now_millis(),
        };
        self.writer
            .submit_lazily(Place::Kept, alone, received, insert_updates)
    }

    /// Updates stored but not yet answered, oldest first.
    pub async fn pending_updates(&self, channel: &str) -> Result<Vec<PendingUpdate>> {
        let rows = sqlx::query(
            "SELECT update_id, payload FROM inbound_updates WHERE channel = $1 AND state = 'new' \
             ORDER BY update_id",
        )
        .bind(channel)
        .fetch_all(&mut *self.reader().await?)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(PendingUpdate {
                    update_id: r.try_get("update_id")?,
                    payload: r.try_get("payload")?,
                })
            })
            .collect()
    }

    /// Marks updates answered and queues their answer, in one transaction: after a crash the
    /// update is either still new (and is handled again) or answered, never both.
    pub async fn settle_update(
        &self,
        channel: &str,
        update_ids: &[i64],
        answer: &[NewOutbox],
    ) -> Result<()> {
        self.settle(channel, update_ids, answer, None).await
    }

    /// Queues an answer, marks the updates it answers (if any) answered, and forgets the chat's
    /// growing reply (`live`: chat id and thread), all in one transaction: the answer that
    /// replaces a partial message and the record of that message never both survive a crash.
    pub async fn settle(
        &self,
        channel: &str,
        update_ids: &[i64],
        answer: &[NewOutbox],
        live: Option<(&str, &str)>,
    ) -> Result<()> {
        let settled = Settled {
            channel: channel.to_string(),
            update_ids: update_ids.to_vec(),
            answer: answer.to_vec(),
            live: live.map(|(chat, thread)| (chat.to_string(), thread.to_string())),
            at: now_millis(),
        };
        let alone = Alone::statements(
            settled.update_ids.len() + settled.answer.len() + usize::from(live.is_some()),
        );
        self.writer.write(alone, settled, settle_rows).await
    }

    /// Records a message created to show a reply while it is written. Committed without
    /// waiting for its fsync: the record matters to a crash of the process, which the kernel's
    /// cache survives, and the shorter the time between the message's send and its record, the
    /// smaller the chance that a kill leaves a partial message no start can take back. A power
    /// loss before it is synced (within 50 ms) forgets it and leaves that message in the chat, as
    /// a kill between the send and the record does.
    pub async fn remember_live_reply(
        &self,
        channel: &str,
        chat_id: &str,
        thread_id: &str,
        message_id: &str,
    ) -> Result<()> {
        let shown = [channel, chat_id, thread_id, message_id].map(str::to_string);
        let alone = Alone::OneStatement;
        self.writer
            .write_visible(alone, (shown, now_millis()), insert_live_reply)
            .await
    }

    /// Takes back the partial messages a stopped process left: each becomes a deletion in the
    /// outbox, in the same transaction that forgets it. Returns how many there were.
    pub async fn retract_live_replies(&self, channel: &str) -> Result<usize> {
        let mut tx = self.write.begin().await?;
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT chat_id, thread_id, message_id FROM live_replies WHERE channel = $1",
        )
        .bind(channel)
        .fetch_all(&mut *tx)
        .await?;
        let deletions: Vec<NewOutbox> = rows
            .into_iter()
            .map(|(chat_id, thread_id, message_id)| NewOutbox {
                chat_id,
                thread_id,
                kind: "delete",
                text: message_id,
            })
            .collect();
        insert_outbox(&mut tx, channel, &deletions).await?;
        sqlx::query("DELETE FROM live_replies WHERE channel = $1")
            .bind(channel)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(deletions.len())
    }

    /// Queues messages for delivery.
    pub async fn queue_outbox(&self, channel: &str, messages: &[NewOutbox]) -> Result<()> {
        let mut tx = self.write.begin().await?;
        insert_outbox(&mut tx, channel, messages).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The oldest waiting messages of a channel after the row `after`.
    pub async fn outbox_after(
        &self,
        channel: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<OutboxRow>> {
        // Every delivery round reads it: a read of the hot path.
        self.inline.read(|db| {
            db.query_map(
                "SELECT id, chat_id, thread_id, kind, text FROM outbox WHERE channel = ?1 \
                 AND id > ?2 ORDER BY id LIMIT ?3",
                &[channel.into(), after.into(), limit.into()],
                |r| {
                    Ok(OutboxRow {
                        id: r.column("id")?,
                        chat_id: r.column("chat_id")?,
                        thread_id: r.column("thread_id")?,
                        kind: r.column("kind")?,
                        text: r.column("text")?,
                    })
                },
            )
        })
    }

    /// Messages waiting over all channels.
    pub async fn outbox_depth(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM outbox")
            .fetch_one(&mut *self.reader().await?)
            .await?)
    }

    /// Takes a sent (or given up) message out of the outbox. Committed without waiting for its
    /// fsync (the writer syncs it within 50 ms): a crash of the process loses nothing, and a
    /// power loss in those milliseconds sends the message again, as one during its send does.
    pub async fn outbox_delivered(&self, id: i64) -> Result<()> {
        self.writer
            .write_visible(Alone::OneStatement, id, delete_outbox_row)
            .await
    }

    /// The pending pairing of a user, if any and unexpired.
    pub async fn pairing_of(&self, platform: &str, user_id: &str) -> Result<Option<PairingRecord>> {
        let row = sqlx::query(
            "SELECT * FROM pairings WHERE platform = $1 AND user_id = $2 AND expires_at > $3",
        )
        .bind(platform)
        .bind(user_id)
        .bind(now_millis())
        .fetch_optional(&mut *self.reader().await?)
        .await?;
        row.as_ref().map(pairing_from_row).transpose()
    }

    pub async fn put_pairing(&self, p: &PairingRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO pairings (platform, user_id, name, chat, code, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (platform, user_id) DO UPDATE SET \
             name = excluded.name, chat = excluded.chat, code = excluded.code, \
             expires_at = excluded.expires_at",
        )
        .bind(&p.platform)
        .bind(&p.user_id)
        .bind(&p.name)
        .bind(&p.chat)
        .bind(&p.code)
        .bind(p.expires_at)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Unexpired pairing requests, newest first.
    pub async fn list_pairings(&self) -> Result<Vec<PairingRecord>> {
        sqlx::query("SELECT * FROM pairings WHERE expires_at > $1 ORDER BY expires_at DESC")
            .bind(now_millis())
            .fetch_all(&mut *self.reader().await?)
            .await?
            .iter()
            .map(pairing_from_row)
            .collect()
    }

    /// Approves the unexpired pairing with this code: the user becomes a paired user and the
    /// code is used up. Returns the pairing.
    pub async fn approve_pairing(&self, code: &str, approved_by: &str) -> Result<PairingRecord> {
        let mut tx = self.write.begin().await?;
        let row = sqlx::query("SELECT * FROM pairings WHERE code = $1 AND expires_at > $2")
            .bind(code)
            .bind(now_millis())
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| not_found(format!("pairing code {code}"))(e.into()))?;
        let pairing = pairing_from_row(&row)?;
        sqlx::query("DELETE FROM pairings WHERE platform = $1 AND user_id = $2")
            .bind(&pairing.platform)
            .bind(&pairing.user_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO paired_users (platform, user_id, name, approved_by, approved_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(&pairing.platform)
        .bind(&pairing.user_id)
        .bind(&pairing.name)
        .bind(approved_by)
        .bind(now_millis())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(pairing)
    }

    pub async fn is_paired(&self, platform: &str, user_id: &str) -> Result<bool> {
        Ok(sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM paired_users WHERE platform = $1 AND user_id = $2",
        )
        .bind(platform)
        .bind(user_id)
        .fetch_one(&mut *self.reader().await?)
        .await?
            > 0)
    }

    /// Removes a paired user's access; returns whether there was any.
    pub async fn unpair(&self, platform: &str, user_id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM paired_users WHERE platform = $1 AND user_id = $2")
            .bind(platform)
            .bind(user_id)
            .execute(&self.write)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}

fn pairing_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<PairingRecord> {
    Ok(PairingRecord {
        platform: row.try_get("platform")?,
        user_id: row.try_get("user_id")?,
        name: row.try_get("name")?,
        chat: row.try_get("chat")?,
        code: row.try_get("code")?,
        expires_at: row.try_get("expires_at")?,
    })
}

/// Updates as received, with the offset that confirms them.
struct Received {
    channel: String,
    updates: Vec<(i64, String)>,
    next_offset: Option<i64>,
    at: Millis,
}

/// The ids of the updates that were new.
fn insert_updates(r: &Received, db: &mut Db) -> Result<Vec<i64>> {
    let mut fresh = Vec::new();
    for (id, payload) in &r.updates {
        let inserted = db.execute(
            "INSERT INTO inbound_updates (channel, update_id, payload, received_at) \
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
            &[
                (&r.channel).into(),
                (*id).into(),
                payload.into(),
                r.at.into(),
            ],
        )?;
        if inserted == 1 {
            fresh.push(*id);
        }
    }
    if let Some(offset) = r.next_offset {
        db.execute(
            "UPDATE bots SET poll_offset = MAX(poll_offset, ?2) WHERE channel = ?1",
            &[(&r.channel).into(), offset.into()],
        )?;
    }
    Ok(fresh)
}

/// An answer with what it settles.
struct Settled {
    channel: String,
    update_ids: Vec<i64>,
    answer: Vec<NewOutbox>,
    /// The chat (id, thread) whose growing reply the answer replaces.
    live: Option<(String, String)>,
    at: Millis,
}

fn settle_rows(s: &Settled, db: &mut Db) -> Result<()> {
    if let Some((chat_id, thread_id)) = &s.live {
        db.execute(
            "DELETE FROM live_replies WHERE channel = ?1 AND chat_id = ?2 AND thread_id = ?3",
            &[(&s.channel).into(), chat_id.into(), thread_id.into()],
        )?;
    }
    for update_id in &s.update_ids {
        db.execute(
            "UPDATE inbound_updates SET state = 'done', payload = '' \
             WHERE channel = ?1 AND update_id = ?2",
            &[(&s.channel).into(), (*update_id).into()],
        )?;
    }
    for m in &s.answer {
        db.execute(
            INSERT_OUTBOX,
            &[
                (&s.channel).into(),
                (&m.chat_id).into(),
                (&m.thread_id).into(),
                m.kind.into(),
                (&m.text).into(),
                s.at.into(),
            ],
        )?;
    }
    Ok(())
}

/// ([channel, chat id, thread id, message id], when).
fn insert_live_reply((shown, at): &([String; 4], Millis), db: &mut Db) -> Result<()> {
    let [channel, chat_id, thread_id, message_id] = shown;
    db.execute(
        "INSERT INTO live_replies (channel, chat_id, thread_id, message_id, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
        &[
            channel.into(),
            chat_id.into(),
            thread_id.into(),
            message_id.into(),
            (*at).into(),
        ],
    )?;
    Ok(())
}

fn delete_outbox_row(id: &i64, db: &mut Db) -> Result<()> {
    db.execute("DELETE FROM outbox WHERE id = ?1", &[(*id).into()])?;
    Ok(())
}

const INSERT_OUTBOX: &str = "INSERT INTO outbox (channel, chat_id, thread_id, kind, text, created_at) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

async fn insert_outbox(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    channel: &str,
    messages: &[NewOutbox],
) -> Result<()> {
    insert_outbox_at(tx, channel, messages, now_millis()).await
}

async fn insert_outbox_at(
    conn: &mut SqliteConnection,
    channel: &str,
    messages: &[NewOutbox],
    now: Millis,
) -> Result<()> {
    for m in messages {
        sqlx::query(INSERT_OUTBOX)
            .bind(channel)
            .bind(&m.chat_id)
            .bind(&m.thread_id)
            .bind(m.kind)
            .bind(&m.text)
            .bind(now)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}
