//! wasmpod's block in a k3s or rke2 containerd template. A template is Go template text, not
//! TOML, so the block is delimited by marker lines: added once, replaced in place, and
//! removed with exactly the bytes it added.

/// The first line of the block.
pub const BEGIN: &str =
    "# BEGIN wasmpod: added by `wasmpod node install`; `wasmpod node uninstall` removes it";
/// The last line of the block.
pub const END: &str = "# END wasmpod";
/// What a template the installer creates starts with: the distribution's own config.
pub const BASE: &str = "{{ template \"base\" . }}\n";

/// `text` with the block holding `tables`: the old block replaced, or a new one appended.
pub fn with_block(text: &str, tables: &str) -> String {
    let block = format!("{BEGIN}\n{tables}{END}\n");
    if let Some((start, end)) = find(text) {
        return format!("{}{block}{}", &text[..start], &text[end..]);
    }
    let mut out = text.to_string();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&block);
    out
}

/// `text` without the block (and without the blank line `with_block` put before it).
pub fn without_block(text: &str) -> String {
    match find(text) {
        Some((start, end)) => {
            let before = &text[..start];
            let before = before.strip_suffix('\n').unwrap_or(before);
            format!("{before}{}", &text[end..])
        }
        None => text.to_string(),
    }
}

/// Whether `text` holds the block.
pub fn has_block(text: &str) -> bool {
    find(text).is_some()
}

/// The byte range of the block, lines included.
fn find(text: &str) -> Option<(usize, usize)> {
    let start = text.find(&format!("{BEGIN}\n"))?;
    let after = start + text[start..].find(&format!("\n{END}"))? + 1 + END.len();
    let end = if text[after..].starts_with('\n') {
        after + 1
    } else {
        after
    };
    Some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_replaces_and_removes_the_block_exactly() {
        let user = "{{ template \"base\" . }}\n[plugins.x]\n  a = 1\n";
        let once = with_block(user, "[t]\nk = 1\n");
        assert!(once.starts_with(user));
        assert!(has_block(&once));
        let again = with_block(&once, "[t]\nk = 2\n");
        assert_eq!(again.matches(BEGIN).count(), 1);
        assert!(again.contains("k = 2") && !again.contains("k = 1"));
        assert_eq!(without_block(&again), user);
        assert_eq!(without_block(user), user);
        // A file without a final newline gets one before the block, and keeps it after.
        let bare = "{{ template \"base\" . }}";
        assert_eq!(
            without_block(&with_block(bare, "[t]\n")),
            format!("{bare}\n")
        );
        // Text after the block (added by hand later) stays.
        let later = format!("{once}[mine]\n");
        assert_eq!(without_block(&later), format!("{user}[mine]\n"));
    }
}
