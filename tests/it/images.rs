//! Images reach the model: a photo sent in Telegram arrives in the model's request as an image
//! part in the vendor's own format (a data URL or a base64 block, never a Telegram file URL),
//! scaled to a long side of 1568 px; a model that refuses images gets the text path, and the
//! person is told once.

use std::io::Cursor;
use std::time::Duration;

use serde_json::json;

use crate::support::llm::images_in;
use crate::support::process::stop;
use crate::support::telegram::FakeTelegram;
use crate::support::{FakeLlm, Vendor, World};

const WAIT: Duration = Duration::from_secs(30);
const OWNER: u64 = 111;

/// A PNG of the given size (a gradient, so it does not compress to nothing).
pub fn png(width: u32, height: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x % 251) as u8, (y % 241) as u8, ((x + y) % 256) as u8])
    });
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(image)
        .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

fn dimensions(bytes: &[u8]) -> (u32, u32) {
    image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .unwrap()
        .into_dimensions()
        .unwrap()
}

/// Sends a photo with a caption from the owner; the fake serves its bytes.
fn send_photo(tg: &FakeTelegram, id: &str, bytes: &[u8], caption: &str) {
    tg.add_file(id, &format!("photos/{id}.jpg"), bytes);
    tg.message(
        json!({ "id": OWNER, "type": "private", "first_name": "Owner" }),
        OWNER,
        "",
        json!({
            "caption": caption,
            "photo": [
                { "file_id": format!("{id}-small"), "file_unique_id": format!("s{id}"),
                  "width": 90, "height": 60, "file_size": 10 },
                { "file_id": id, "file_unique_id": format!("u{id}"),
                  "width": 3000, "height": 2000, "file_size": bytes.len() }
            ]
        }),
    );
}

async fn photo_reaches(vendor: Vendor) {
    let llm = FakeLlm::start(vendor).await;
    let tg = FakeTelegram::start().await;
    match vendor {
        Vendor::OpenAi => llm.echo(),
        _ => llm.reply_text("A warm palette: rust, sand and teal."),
    }
    let world = World::new(
        Some(&llm),
        &tg.config(&format!("owners = [{OWNER}]\nstreaming = \"off\"\n")),
    );
    let daemon = world.daemon(&[]);
    let big = png(3000, 2000);
    send_photo(&tg, "ph-1", &big, "pull the colour palette from this");
    let sent = tg.wait_sent(OWNER as i64, 1, WAIT).await;
    let log = stop(daemon).await;
    let request = llm
        .completions()
        .last()
        .expect("a model request")
        .body
        .clone();
    let images = images_in(&request);
    assert_eq!(images.len(), 1, "{log}");
    let (media_type, bytes) = &images[0];
    assert_eq!(media_type, "image/jpeg");
    assert_eq!(dimensions(bytes), (1568, 1045), "scaled to the long side");
    // The bot token (part of every Telegram file URL) never reaches the model.
    assert!(!request.to_string().contains(&tg.token), "{request}");
    match vendor {
        Vendor::OpenAi => assert!(
            sent[0].starts_with("echo: pull the colour palette from this")
                && sent[0].contains("(image)"),
            "{sent:?}"
        ),
        _ => assert_eq!(sent, vec!["A warm palette: rust, sand and teal."], "{log}"),
    }
}

#[tokio::test]
async fn a_telegram_photo_reaches_an_openai_model_as_a_scaled_image_part() {
    photo_reaches(Vendor::OpenAi).await;
}

#[tokio::test]
async fn a_telegram_photo_reaches_an_anthropic_model_as_a_scaled_image_block() {
    photo_reaches(Vendor::Anthropic).await;
}

#[tokio::test]
async fn a_model_that_refuses_images_gets_the_text_path_and_the_person_is_told_once() {
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    let tg = FakeTelegram::start().await;
    llm.reply_error(400, "image_url is only supported by certain models");
    llm.echo();
    let world = World::new(
        Some(&llm),
        &tg.config(&format!("owners = [{OWNER}]\nstreaming = \"off\"\n")),
    );
    let daemon = world.daemon(&[]);
    send_photo(&tg, "ph-1", &png(200, 100), "first");
    tg.wait_until(WAIT, |_| {
        tg.sent_to(OWNER as i64)
            .iter()
            .any(|s| s.starts_with("echo: first"))
    })
    .await;
    send_photo(&tg, "ph-2", &png(200, 100), "second");
    tg.wait_until(WAIT, |_| {
        tg.sent_to(OWNER as i64)
            .iter()
            .any(|s| s.starts_with("echo: second"))
    })
    .await;
    let sent = tg.sent_to(OWNER as i64);
    let log = stop(daemon).await;
    let notes = sent
        .iter()
        .filter(|s| s.starts_with("The model fake-model does not take images"))
        .count();
    assert_eq!(notes, 1, "told once: {sent:?}\n{log}");
    let echoed = sent.iter().find(|s| s.starts_with("echo: first")).unwrap();
    assert!(
        echoed.contains("is not shown: this model does not take images"),
        "{sent:?}"
    );
    // Three requests: the refused one, its text retry, and the second photo as text at once.
    let requests = llm.completions();
    assert_eq!(requests.len(), 3, "{log}");
    assert_eq!(images_in(&requests[0].body).len(), 1);
    assert!(images_in(&requests[1].body).is_empty());
    assert!(images_in(&requests[2].body).is_empty());
}
