//! The files that hold secrets and mail are their owner's only: the data directory 0700, the key
//! file and the SQLite database (with its -wal and -shm) 0600. New ones are created so; existing
//! ones found looser are tightened, and the operator is told.

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::StartError;

/// Creates `path` (0700) if missing; tightens it if others may read it.
pub fn data_dir(path: &Path) -> Result<(), StartError> {
    if !path.is_dir() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .map_err(|source| StartError::DataDir {
                path: path.display().to_string(),
                source,
            })?;
    }
    tighten(path, 0o700);
    Ok(())
}

/// Pre-creates the SQLite file 0600 (SQLite gives its -wal and -shm the database's mode), and
/// tightens all three if they exist looser.
pub fn sqlite_files(database_url: &str) {
    let Some(path) = sqlite_path(database_url) else {
        return;
    };
    if !path.exists() {
        let _ = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path);
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.clone().into_os_string();
        name.push(suffix);
        let file = PathBuf::from(name);
        if file.exists() {
            tighten(&file, 0o600);
        }
    }
}

/// Tightens the key file when it is readable by others.
pub fn key_file(path: &Path) {
    if path.exists() {
        tighten(path, 0o600);
    }
}

/// `sqlite://path/to.db?mode=rwc` → `path/to.db`; None for PostgreSQL and in-memory databases.
fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
}

/// Removes the group and other bits beyond `mode`, warning when it had to.
fn tighten(path: &Path, mode: u32) {
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    let current = meta.permissions().mode() & 0o777;
    if current & !mode == 0 {
        return;
    }
    match std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)) {
        Ok(()) => tracing::warn!(
            path = %path.display(),
            "{} was {current:o}, readable by others; now {mode:o}",
            path.display()
        ),
        Err(e) => tracing::warn!(
            path = %path.display(),
            "{} is {current:o}, readable by others, and cannot be tightened: {e}",
            path.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_paths_are_read_from_urls() {
        assert_eq!(
            sqlite_path("sqlite://data/mailgate.db?mode=rwc"),
            Some(PathBuf::from("data/mailgate.db"))
        );
        assert_eq!(
            sqlite_path("sqlite:///tmp/x.db"),
            Some(PathBuf::from("/tmp/x.db"))
        );
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(sqlite_path("postgres://u:p@h/db"), None);
    }

    #[test]
    fn loose_files_and_directories_are_tightened() {
        let dir = std::env::temp_dir().join(format!("mailgate-perms-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let key = dir.join("secret.key");
        std::fs::write(&key, "k").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        data_dir(&dir).unwrap();
        key_file(&key);
        let db = dir.join("m.db");
        sqlite_files(&format!("sqlite://{}?mode=rwc", db.display()));
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode(&dir), mode(&key), mode(&db)), (0o700, 0o600, 0o600));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
