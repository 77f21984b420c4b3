//! The evaluation texts, reconstructed exactly as the protocols in the README define them.

/// `wiki.utf8` holds articles between a `<doc …>` line and a `</doc>` line. An article's text is
/// its inner lines joined with `"\n"`, trimmed; articles are joined with `"\n\n"`.
pub fn wiki_text(raw: &str) -> String {
    let mut articles = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in raw.lines() {
        if line.starts_with("<doc") {
            current = Some(Vec::new());
        } else if line.trim_end() == "</doc>" {
            if let Some(lines) = current.take() {
                let text = lines.join("\n");
                let text = text.trim();
                if !text.is_empty() {
                    articles.push(text.to_string());
                }
            }
        } else if let Some(lines) = current.as_mut() {
            lines.push(line);
        }
    }
    articles.join("\n\n")
}

/// `c4.utf8` holds one document per line.
pub fn c4_documents(raw: &str) -> Vec<&str> {
    raw.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wiki_articles_are_rebuilt() {
        let raw = "<doc id=\"1\" title=\"A\">\nA\n\nFirst line.\nSecond.\n</doc>\n<doc id=\"2\">\nB text\n</doc>\n";
        assert_eq!(wiki_text(raw), "A\n\nFirst line.\nSecond.\n\nB text");
    }
}
