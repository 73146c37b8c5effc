//! `--attach FILE`: images and PDFs read, checked and made into attachments before anything
//! is sent, so a bad file is a usage error that costs nothing.

use std::io::Read;
use std::path::Path;

use chat_core::Attachment;
use pplx::history::Attached;

/// The largest file taken: Perplexity's bound on one inline image (50 MB).
pub(crate) const MAX_FILE_BYTES: u64 = 50_000_000;

/// The file at `path` as an attachment, and what the history keeps of it (its name and size,
/// never its bytes); or why it cannot be sent.
pub(crate) fn load(path: &Path) -> Result<(Attachment, Attached), String> {
    let shown = path.display();
    let file = std::fs::File::open(path).map_err(|error| format!("--attach {shown}: {error}"))?;
    let metadata = file
        .metadata()
        .map_err(|error| format!("--attach {shown}: {error}"))?;
    if !metadata.is_file() {
        return Err(format!("--attach {shown}: not a file"));
    }
    if metadata.len() > MAX_FILE_BYTES {
        return Err(too_large(path, metadata.len()));
    }
    // Read with a bound too: the file may grow between the check and the read.
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| format!("--attach {shown}: {error}"))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large(path, bytes.len() as u64));
    }
    let Some(media_type) = Attachment::sniff(&bytes) else {
        return Err(format!(
            "--attach {shown}: not a PNG, JPEG, WebP or GIF image, nor a PDF (by its first bytes)"
        ));
    };
    let name = path.file_name().map_or_else(
        || "attachment".to_owned(),
        |name| name.to_string_lossy().into_owned(),
    );
    let mut attachment = Attachment::from_bytes(media_type, &bytes);
    if media_type == "application/pdf" {
        attachment = attachment.with_name(name.clone());
    }
    let attached = Attached::new(name, bytes.len() as u64, media_type);
    Ok((attachment, attached))
}

fn too_large(path: &Path, bytes: u64) -> String {
    format!(
        "--attach {}: {bytes} bytes is over the {MAX_FILE_BYTES}-byte limit (50 MB); send a smaller file",
        path.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_and_pdfs_load_and_everything_else_is_refused_with_its_reason() {
        let directory = std::env::temp_dir().join(format!("pplx-attach-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        let write = |name: &str, bytes: &[u8]| {
            let path = directory.join(name);
            std::fs::write(&path, bytes).unwrap();
            path
        };
        let (image, kept) = load(&write("cat.png", b"\x89PNG\r\n\x1a\nrest")).unwrap();
        assert_eq!(image.kind, chat_core::AttachmentKind::Image);
        assert_eq!(image.inline().unwrap().0, "image/png");
        assert_eq!((kept.name.as_str(), kept.bytes), ("cat.png", 12));
        let (pdf, _) = load(&write("report.pdf", b"%PDF-1.7\n")).unwrap();
        assert_eq!(pdf.name.as_deref(), Some("report.pdf"));

        let refused = load(&write("notes.txt", b"plain text")).unwrap_err();
        assert!(
            refused.contains("not a PNG, JPEG, WebP or GIF image, nor a PDF"),
            "{refused}"
        );
        let missing = load(&directory.join("absent.png")).unwrap_err();
        assert!(missing.contains("absent.png"), "{missing}");
        let not_a_file = load(&directory).unwrap_err();
        assert!(not_a_file.contains("not a file"), "{not_a_file}");
        std::fs::remove_dir_all(&directory).unwrap();
    }
}
