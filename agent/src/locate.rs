//! Finds the line and column of a field path (`checks[1].name`) in block-style YAML
//! text, so validation errors can point into the config file like parse errors do.

/// One step of a field path.
enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

fn segments(path: &str) -> Vec<Seg<'_>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (key, mut rest) = part.split_once('[').map_or((part, ""), |(k, r)| (k, r));
        if !key.is_empty() {
            out.push(Seg::Key(key));
        }
        while let Some((idx, tail)) = rest.split_once(']') {
            if let Ok(i) = idx.parse() {
                out.push(Seg::Index(i));
            }
            rest = tail.strip_prefix('[').unwrap_or("");
        }
    }
    out
}

/// A meaningful line: its index, the column where its content starts (after any
/// `- ` list markers), and whether it opens a list item.
struct Line<'a> {
    no: usize,
    col: usize,
    item: bool,
    content: &'a str,
}

fn lines(text: &str) -> Vec<Line<'_>> {
    let mut out = Vec::new();
    for (no, raw) in text.lines().enumerate() {
        let trimmed = raw.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with("---") {
            continue;
        }
        let mut col = raw.len() - trimmed.len();
        let mut content = trimmed;
        let mut item = false;
        while let Some(rest) = content.strip_prefix("- ") {
            let inner = rest.trim_start();
            col += content.len() - inner.len();
            content = inner;
            item = true;
        }
        out.push(Line {
            no,
            col,
            item,
            content,
        });
    }
    out
}

/// 1-based `(line, column)` of the field at `path`, if the text spells it out.
pub fn locate(text: &str, path: &str) -> Option<(usize, usize)> {
    let all = lines(text);
    let (mut lo, mut hi) = (0, all.len());
    let mut found = None;
    for seg in segments(path) {
        let scope = &all[lo..hi];
        let base = scope.iter().map(|l| l.col).min()?;
        match seg {
            Seg::Key(key) => {
                let at = scope.iter().position(|l| {
                    l.col == base
                        && l.content
                            .strip_prefix(key)
                            .is_some_and(|r| r.starts_with(':'))
                })?;
                let line = &scope[at];
                found = Some((line.no + 1, line.col + 1));
                let end = scope[at + 1..]
                    .iter()
                    .position(|l| l.col <= base)
                    .map_or(scope.len(), |p| at + 1 + p);
                (lo, hi) = (lo + at + 1, lo + end);
            }
            Seg::Index(i) => {
                // List items start at the smallest column in scope.
                let starts: Vec<usize> = scope
                    .iter()
                    .enumerate()
                    .filter(|(_, l)| l.item && l.col == base)
                    .map(|(k, _)| k)
                    .collect();
                let start = *starts.get(i)?;
                let end = starts.get(i + 1).copied().unwrap_or(scope.len());
                let line = &scope[start];
                found = Some((line.no + 1, line.col + 1));
                // The item's own keys sit at `base`, on its first line and below it.
                (lo, hi) = (lo + start, lo + end);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::locate;

    #[test]
    fn finds_fields() {
        let text = "\
node_id: n1
# comment
capacity:
  weight: 2
checks:
  - name: a
    kind: tcp
    addr: x:1
  - name: b
    kind: http
    url: http://x
";
        let cases = [
            ("node_id", Some((1, 1))),
            ("capacity.weight", Some((4, 3))),
            ("checks", Some((5, 1))),
            ("checks[0].name", Some((6, 5))),
            ("checks[1].name", Some((9, 5))),
            ("checks[1].url", Some((11, 5))),
            ("checks[0].url", None),
            ("checks[2].name", None),
            ("listen", None),
        ];
        for (path, want) in cases {
            assert_eq!(locate(text, path), want, "{path}");
        }
    }
}
