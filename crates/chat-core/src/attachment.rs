use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

/// What an [`Attachment`] is, which decides how a provider sends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum AttachmentKind {
    /// A picture the model looks at (PNG, JPEG, WebP, GIF).
    Image,
    /// A document the model reads (a PDF, ...).
    File,
}

/// An image or a file on a user message: by URL (the service fetches it) or inline (the bytes
/// in a `data:` URL).
///
/// ```
/// use chat_core::{Attachment, AttachmentKind, Message};
///
/// let png = b"\x89PNG\r\n\x1a\n...";
/// let media_type = Attachment::sniff(png).unwrap();
/// assert_eq!(media_type, "image/png");
/// let image = Attachment::from_bytes(media_type, png);
/// assert_eq!(image.kind, AttachmentKind::Image);
/// assert!(image.url.starts_with("data:image/png;base64,"));
///
/// let question = Message::user("What is in this picture?").with_attachment(image);
/// assert_eq!(question.attachments.len(), 1);
/// ```
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Attachment {
    /// An image or a file.
    pub kind: AttachmentKind,
    /// An `https://` URL, or a `data:<media type>;base64,<bytes>` URL.
    pub url: String,
    /// The file's name, sent with files (the service may use it to tell formats apart).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// The media types [`Attachment::sniff`] recognises, with their magic bytes.
const SIGNATURES: &[(&[u8], &str)] = &[
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xFF\xD8\xFF", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"%PDF-", "application/pdf"),
];

impl Attachment {
    /// An image the service fetches from `url`.
    pub fn image_url(url: impl Into<String>) -> Self {
        Attachment {
            kind: AttachmentKind::Image,
            url: url.into(),
            name: None,
        }
    }

    /// A file (a PDF, a document) the service fetches from `url`.
    pub fn file_url(url: impl Into<String>, name: impl Into<String>) -> Self {
        Attachment {
            kind: AttachmentKind::File,
            url: url.into(),
            name: Some(name.into()),
        }
    }

    /// `bytes` of `media_type`, inline as a data URL: an image when the type is `image/*`,
    /// a file otherwise. The media type is taken as given (see [`Attachment::sniff`]).
    pub fn from_bytes(media_type: &str, bytes: &[u8]) -> Self {
        let kind = if media_type.starts_with("image/") {
            AttachmentKind::Image
        } else {
            AttachmentKind::File
        };
        let mut url = String::with_capacity(media_type.len() + 13 + bytes.len().div_ceil(3) * 4);
        url.push_str("data:");
        url.push_str(media_type);
        url.push_str(";base64,");
        STANDARD.encode_string(bytes, &mut url);
        Attachment {
            kind,
            url,
            name: None,
        }
    }

    /// The same attachment with a file name.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The media type `bytes` begin like: `image/png`, `image/jpeg`, `image/webp`,
    /// `image/gif` or `application/pdf`; `None` for anything else.
    pub fn sniff(bytes: &[u8]) -> Option<&'static str> {
        if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
            return Some("image/webp");
        }
        SIGNATURES
            .iter()
            .find(|(magic, _)| bytes.starts_with(magic))
            .map(|(_, media_type)| *media_type)
    }

    /// For an inline attachment: its media type and its base64 text (without the
    /// `data:...;base64,` prefix); `None` for a URL.
    pub fn inline(&self) -> Option<(&str, &str)> {
        let rest = self.url.strip_prefix("data:")?;
        let (media_type, data) = rest.split_once(";base64,")?;
        Some((media_type, data))
    }

    /// How many bytes it adds to a request: its URL (for inline data, the base64 text).
    pub fn request_bytes(&self) -> usize {
        self.url.len() + self.name.as_ref().map_or(0, String::len)
    }
}

/// Inline data is summarised: a debug line never holds megabytes of base64.
impl fmt::Debug for Attachment {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = formatter.debug_struct("Attachment");
        debug.field("kind", &self.kind);
        match self.inline() {
            Some((media_type, data)) => debug.field(
                "url",
                &format_args!("data:{media_type};base64,<{} characters>", data.len()),
            ),
            None => debug.field("url", &self.url),
        };
        debug.field("name", &self.name).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_become_a_data_url_that_decodes_to_them() {
        let bytes: Vec<u8> = (0..=255).collect();
        let attachment = Attachment::from_bytes("application/pdf", &bytes).with_name("a.pdf");
        assert_eq!(attachment.kind, AttachmentKind::File);
        let (media_type, data) = attachment.inline().unwrap();
        assert_eq!(media_type, "application/pdf");
        assert_eq!(STANDARD.decode(data).unwrap(), bytes);
        assert_eq!(attachment.name.as_deref(), Some("a.pdf"));
        assert_eq!(
            Attachment::image_url("https://x.example/a.png").inline(),
            None
        );
    }

    #[test]
    fn magic_bytes_name_the_supported_types_and_nothing_else() {
        assert_eq!(
            Attachment::sniff(b"\x89PNG\r\n\x1a\nrest"),
            Some("image/png")
        );
        assert_eq!(Attachment::sniff(b"\xFF\xD8\xFF\xE0"), Some("image/jpeg"));
        assert_eq!(Attachment::sniff(b"GIF89a.."), Some("image/gif"));
        assert_eq!(
            Attachment::sniff(b"RIFF\0\0\0\0WEBPVP8 "),
            Some("image/webp")
        );
        assert_eq!(Attachment::sniff(b"%PDF-1.7"), Some("application/pdf"));
        assert_eq!(Attachment::sniff(b"RIFF\0\0\0\0WAVEfmt "), None);
        assert_eq!(Attachment::sniff(b"hello"), None);
        assert_eq!(Attachment::sniff(b""), None);
    }

    #[test]
    fn debug_output_summarises_inline_data() {
        let attachment = Attachment::from_bytes("image/png", &[7; 3000]);
        let debug = format!("{attachment:?}");
        assert!(
            debug.contains("data:image/png;base64,<4000 characters>"),
            "{debug}"
        );
        assert!(debug.len() < 200, "{debug}");
    }
}
