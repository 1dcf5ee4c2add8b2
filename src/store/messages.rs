//! How a message is written: the rows the group writer stores for a message, its images, and
//! what a person said (stored once per platform receipt).

use super::conversations::{NewMessage, parse_tool_calls};
use super::raw::Db;
use super::writer::Alone;
use super::{Result, StoreError};
use crate::domain::{ImagePart, Millis, Role, StoredMessage, now_millis};
use crate::secrets::Redactor;

/// Secret values never reach the history on disk.
fn redact(text: &str) -> String {
    Redactor::global().redact(text).into_owned()
}

const INSERT_IMAGE: &str = "INSERT INTO message_images (message_id, position, media_type, label, data) \
     VALUES (?1, ?2, ?3, ?4, ?5)";

/// A message as it is written (redacted).
pub(super) struct MessageRow {
    conversation_id: i64,
    role: Role,
    content: String,
    tool_calls: Option<String>,
    tool_call_id: Option<String>,
    tool_name: Option<String>,
    is_error: bool,
    at: Millis,
    images: Vec<ImagePart>,
}

/// A message as the row [`insert_message`] stores, and how it runs alone.
pub(super) fn message_row(
    conversation_id: i64,
    role: Role,
    message: &NewMessage,
) -> Result<(Alone, MessageRow)> {
    let tool_calls = if message.tool_calls.is_empty() {
        None
    } else {
        Some(
            serde_json::to_string(&message.tool_calls)
                .map_err(|e| StoreError::Conflict(format!("tool calls cannot be stored: {e}")))?,
        )
    };
    let row = MessageRow {
        conversation_id,
        role,
        content: redact(&message.content),
        tool_calls: tool_calls.as_deref().map(redact),
        tool_call_id: message.tool_call_id.clone(),
        tool_name: message.tool_name.clone(),
        is_error: message.is_error,
        at: now_millis(),
        images: message.images.clone(),
    };
    Ok((Alone::statements(1 + message.images.len()), row))
}

pub(super) fn insert_message(m: &MessageRow, db: &mut Db) -> Result<StoredMessage> {
    db.execute(
        "INSERT INTO messages \
         (conversation_id, role, content, tool_calls, tool_call_id, tool_name, is_error, created_at, images) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        &[
            m.conversation_id.into(),
            m.role.as_str().into(),
            (&m.content).into(),
            (&m.tool_calls).into(),
            (&m.tool_call_id).into(),
            (&m.tool_name).into(),
            m.is_error.into(),
            m.at.into(),
            (m.images.len() as i64).into(),
        ],
    )?;
    let id = db.last_insert_rowid();
    insert_images(db, id, &m.images)?;
    // The message as a read gives it back.
    Ok(StoredMessage {
        id,
        role: m.role,
        content: m.content.clone(),
        tool_calls: parse_tool_calls(m.tool_calls.as_deref())?,
        tool_call_id: m.tool_call_id.clone(),
        tool_name: m.tool_name.clone(),
        is_error: m.is_error,
        created_at: m.at,
        images: m.images.clone(),
    })
}

/// Stores a message's images in the transaction that stores the message.
fn insert_images(db: &mut Db, message_id: i64, images: &[ImagePart]) -> Result<()> {
    for (position, image) in images.iter().enumerate() {
        db.execute(
            INSERT_IMAGE,
            &[
                message_id.into(),
                (position as i64).into(),
                (&image.media_type).into(),
                (&image.label).into(),
                image.data.as_slice().into(),
            ],
        )?;
    }
    Ok(())
}

/// What a person said, as it is written (redacted).
pub(super) struct UserRow {
    conversation_id: i64,
    content: String,
    receipt: Option<i64>,
    at: Millis,
    images: Vec<ImagePart>,
}

/// What a person said as it is stored, and how it runs alone.
pub(super) fn user_row(
    conversation_id: i64,
    content: &str,
    receipt: Option<i64>,
    images: &[ImagePart],
) -> (Alone, UserRow) {
    let row = UserRow {
        conversation_id,
        content: redact(content),
        receipt,
        at: now_millis(),
        images: images.to_vec(),
    };
    (Alone::statements(1 + images.len()), row)
}

/// Whether the message was new (one with a receipt already stored is not stored again).
pub(super) fn insert_user_message(m: &UserRow, db: &mut Db) -> Result<bool> {
    let id = db.query_i64(
        "INSERT INTO messages (conversation_id, role, content, receipt, created_at, images) \
         VALUES (?1, 'user', ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING RETURNING id",
        &[
            m.conversation_id.into(),
            (&m.content).into(),
            m.receipt.into(),
            m.at.into(),
            (m.images.len() as i64).into(),
        ],
    )?;
    let Some(id) = id else {
        return Ok(false);
    };
    insert_images(db, id, &m.images)?;
    Ok(true)
}
