//! Config item file names: relative paths that stay inside the directory they are written to.

/// Longest file name.
pub const MAX_FILE_NAME: usize = 255;

/// Checks a config item's file name: a relative path of `/`-separated parts, each of letters,
/// digits, `.`, `_` or `-`, none `.` or `..`, at most [`MAX_FILE_NAME`] bytes (`app.yaml`,
/// `conf.d/db.conf`). The error says what was wrong.
pub fn check_file_name(name: &str) -> Result<(), String> {
    let expected = "expected a relative path of letters, digits, `.`, `_`, `-` and `/` \
                    (like `app.yaml` or `conf.d/db.conf`)";
    if name.is_empty() {
        return Err(format!("a config file needs a name: {expected}"));
    }
    if name.len() > MAX_FILE_NAME {
        return Err(format!("file name `{name}` is longer than {MAX_FILE_NAME} bytes"));
    }
    if name.starts_with('/') {
        return Err(format!("file name `{name}` is absolute: {expected}"));
    }
    for part in name.split('/') {
        if part.is_empty() {
            return Err(format!("file name `{name}` has an empty part (`//` or a trailing `/`)"));
        }
        if part == "." || part == ".." {
            return Err(format!("file name `{name}` has a `{part}` part: {expected}"));
        }
        if let Some(c) =
            part.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(format!("file name `{name}` has the character {c:?}: {expected}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_of_plain_parts_only() {
        for ok in ["app.yaml", "conf.d/db.conf", ".env", "a-b_c.1/x", &"a".repeat(255)] {
            assert!(check_file_name(ok).is_ok(), "{ok}");
        }
        for bad in
            ["", "/etc/passwd", "../x", "a/../b", "a//b", "a/", "./a", "a b", "é.yml", "a\\b"]
        {
            let e = check_file_name(bad).unwrap_err();
            assert!(!e.is_empty(), "{bad}");
        }
        assert!(check_file_name(&"a".repeat(256)).unwrap_err().contains("longer than 255"));
    }
}
