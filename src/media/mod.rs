//! Media for the model: images scaled and encoded so every provider takes them (`prepare`),
//! and speech (`speech.rs`: voice notes transcribed, replies spoken). Knows no channel or
//! model provider.

pub mod speech;

use std::io::Cursor;

use image::{DynamicImage, ImageFormat, ImageReader};

use crate::domain::ImagePart;

/// The longest side an image is given to a model with (larger ones are scaled down).
pub const MAX_SIDE: u32 = 1568;
/// The most bytes one image may take: Anthropic's 5 MB limit applies to the base64 text.
pub const MAX_BYTES: usize = 3_750_000;

/// Whether a file name looks like an image a model can be shown.
pub fn is_image_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [".jpg", ".jpeg", ".png", ".gif", ".webp"]
        .iter()
        .any(|ext| lower.ends_with(ext))
}

/// Makes `bytes` ready for a model: an image whose long side is at most [`MAX_SIDE`] and which
/// fits [`MAX_BYTES`] is kept as it is; a larger one is scaled down and encoded as JPEG (at a
/// lower quality until it fits). Fails, saying why, for bytes that are not an image it can read.
/// This decodes whole images: call it on a blocking thread.
pub fn prepare(bytes: &[u8], label: &str) -> Result<ImagePart, String> {
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| format!("{label} could not be read: {e}"))?;
    let format = reader
        .format()
        .ok_or_else(|| format!("{label} is not an image in a known format"))?;
    let media_type = match format {
        ImageFormat::Jpeg => "image/jpeg",
        ImageFormat::Png => "image/png",
        ImageFormat::Gif => "image/gif",
        ImageFormat::WebP => "image/webp",
        other => {
            return Err(format!(
                "{label} is a {other:?} image, which models do not take"
            ));
        }
    };
    let (width, height) = reader
        .into_dimensions()
        .map_err(|e| format!("{label} could not be read: {e}"))?;
    if width.max(height) <= MAX_SIDE && bytes.len() <= MAX_BYTES {
        return Ok(ImagePart {
            media_type: media_type.into(),
            data: bytes.to_vec(),
            label: label.into(),
        });
    }
    let image = image::load_from_memory_with_format(bytes, format)
        .map_err(|e| format!("{label} could not be decoded: {e}"))?;
    let scaled = if width.max(height) > MAX_SIDE {
        image.resize(MAX_SIDE, MAX_SIDE, image::imageops::FilterType::Triangle)
    } else {
        image
    };
    let rgb = DynamicImage::ImageRgb8(scaled.to_rgb8());
    for quality in [85u8, 70, 55, 40] {
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
            .encode_image(&rgb)
            .map_err(|e| format!("{label} could not be encoded: {e}"))?;
        if out.len() <= MAX_BYTES {
            return Ok(ImagePart {
                media_type: "image/jpeg".into(),
                data: out,
                label: label.into(),
            });
        }
    }
    Err(format!(
        "{label} stays over {MAX_BYTES} bytes even scaled down"
    ))
}

/// [`prepare`] on a blocking thread.
pub async fn prepare_async(bytes: Vec<u8>, label: String) -> Result<ImagePart, String> {
    tokio::task::spawn_blocking(move || prepare(&bytes, &label))
        .await
        .map_err(|e| format!("the image could not be prepared: {e}"))?
}

/// The dimensions of a prepared image, for tests and notes.
pub fn dimensions(part: &ImagePart) -> Option<(u32, u32)> {
    ImageReader::new(Cursor::new(&part.data))
        .with_guessed_format()
        .ok()?
        .into_dimensions()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let image = image::RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
        });
        let mut out = Vec::new();
        DynamicImage::ImageRgb8(image)
            .write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
            .unwrap();
        out
    }

    #[test]
    fn a_small_image_is_kept_as_it_is() {
        let bytes = png(40, 30);
        let part = prepare(&bytes, "a.png").unwrap();
        assert_eq!(part.media_type, "image/png");
        assert_eq!(part.data, bytes);
    }

    #[test]
    fn a_large_image_is_scaled_to_the_long_side() {
        let part = prepare(&png(3000, 1000), "wide.png").unwrap();
        assert_eq!(part.media_type, "image/jpeg");
        assert_eq!(dimensions(&part), Some((1568, 523)));
    }

    #[test]
    fn bytes_that_are_no_image_are_refused_by_name() {
        let err = prepare(b"%PDF-1.7 not an image", "report.pdf").unwrap_err();
        assert!(err.contains("report.pdf"), "{err}");
    }

    #[test]
    fn image_names() {
        assert!(is_image_name("IMG_1.JPG") && is_image_name("x.webp"));
        assert!(!is_image_name("notes.txt"));
    }
}
