//! Which bearer token a command sends, and where the CLI finds it.
//!
//! Each command needs one scope: `put`/`get`/`del` the client token, `drain`,
//! `undrain`, `remove`, `assign` and `rebalance` the admin token, the rest none. For a
//! scope the CLI takes, in order: `--admin-token-file`/`--client-token-file`; the
//! env var `TORUA_ADMIN_TOKEN`/`TORUA_CLIENT_TOKEN` (the token itself); the token
//! file of the `torua dev` cluster serving a loopback coordinator URL (found through
//! the pointer `torua dev` leaves, see [`DevPointers`]). Data commands fall back to
//! the admin token, which the coordinator also accepts there.
//!
//! The pointers live in `$XDG_RUNTIME_DIR/torua/` (per user, mode 0700 by the
//! XDG spec) or else `<temp dir>/torua-<uid>/`, which the CLI creates 0700 and uses
//! only while it is owned by this user and closed to others (as tmux does with its
//! socket directory): another user cannot point this user's CLI at other files.

use crate::secrets::Token;
use anyhow::Context;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The token files of a `torua dev` cluster, in its dev dir.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";
pub const CLIENT_TOKEN_FILE: &str = "client.token";

/// The token scope a command needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    Nothing,
    Admin,
    Client,
}

/// Where the tokens may come from, as the command line and env gave them.
#[derive(Debug, Default)]
pub struct Sources {
    pub admin_file: Option<PathBuf>,
    pub client_file: Option<PathBuf>,
    /// `TORUA_ADMIN_TOKEN` (or the hidden `--token`).
    pub admin_env: Option<String>,
    /// `TORUA_CLIENT_TOKEN`.
    pub client_env: Option<String>,
}

impl Sources {
    /// The token to send for a command that `needs` it, at `coordinators` (the
    /// `--coordinator` list), with `pointers` locating `torua dev` clusters.
    pub fn token_for(
        &self,
        needs: Needs,
        coordinators: &[String],
        pointers: &DevPointers,
    ) -> anyhow::Result<Option<String>> {
        let dev_dir = || coordinators.iter().find_map(|c| pointers.lookup(c));
        let admin = || -> anyhow::Result<Option<String>> {
            pick(
                self.admin_file.as_deref(),
                self.admin_env.as_deref(),
                dev_dir().map(|d| d.join(ADMIN_TOKEN_FILE)),
            )
        };
        match needs {
            Needs::Nothing => Ok(None),
            Needs::Admin => admin(),
            Needs::Client => match pick(
                self.client_file.as_deref(),
                self.client_env.as_deref(),
                dev_dir().map(|d| d.join(CLIENT_TOKEN_FILE)),
            )? {
                Some(t) => Ok(Some(t)),
                None => admin(),
            },
        }
    }
}

/// The first of: the file given by flag (it must load), the env value, the dev
/// dir's file (if it exists).
fn pick(
    flag: Option<&Path>,
    env: Option<&str>,
    dev: Option<PathBuf>,
) -> anyhow::Result<Option<String>> {
    if let Some(f) = flag {
        return Ok(Some(Token::load(f)?.expose().to_string()));
    }
    if let Some(t) = env.map(str::trim).filter(|t| !t.is_empty()) {
        return Ok(Some(t.to_string()));
    }
    match dev {
        Some(f) if f.exists() => Ok(Some(Token::load(&f)?.expose().to_string())),
        _ => Ok(None),
    }
}

/// The directory of `torua dev`'s pointers: one file `dev-<port>` per coordinator
/// it runs, holding the dev dir's path.
#[derive(Debug, Clone)]
pub struct DevPointers {
    dir: PathBuf,
}

impl DevPointers {
    /// `$XDG_RUNTIME_DIR/torua`, or `<temp dir>/torua-<uid>`.
    pub fn from_env() -> DevPointers {
        let dir = match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
            Some(run) => PathBuf::from(run).join("torua"),
            None => std::env::temp_dir().join(format!("torua-{}", my_uid().unwrap_or(0))),
        };
        DevPointers { dir }
    }

    #[cfg(test)]
    pub fn at(dir: PathBuf) -> DevPointers {
        DevPointers { dir }
    }

    fn file(&self, port: u16) -> PathBuf {
        self.dir.join(format!("dev-{port}"))
    }

    /// Says that the coordinator on loopback `port` belongs to the dev cluster in
    /// `dev_dir` (replacing any older pointer for that port).
    pub fn register(&self, port: u16, dev_dir: &Path) -> anyhow::Result<()> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        anyhow::ensure!(
            private_dir(&self.dir),
            "{} is not a directory of this user closed to others; remove it",
            self.dir.display()
        );
        let abs = std::path::absolute(dev_dir)?;
        let tmp = self.dir.join(format!(".dev-{port}.{}", std::process::id()));
        {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            writeln!(f, "{}", abs.display())?;
        }
        std::fs::rename(&tmp, self.file(port))?;
        Ok(())
    }

    /// Removes the pointer for `port` if it still names `dev_dir`.
    pub fn unregister(&self, port: u16, dev_dir: &Path) {
        let Ok(abs) = std::path::absolute(dev_dir) else {
            return;
        };
        if self.read(port).is_some_and(|d| d == abs) {
            let _ = std::fs::remove_file(self.file(port));
        }
    }

    /// The dev dir serving `coordinator` (a base URL), if it is a loopback URL that
    /// a `torua dev` of this user registered.
    pub fn lookup(&self, coordinator: &str) -> Option<PathBuf> {
        let uri: hyper::Uri = coordinator.parse().ok()?;
        let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
        let loopback = host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if !loopback {
            return None;
        }
        let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
            Some("https") => 443,
            _ => 80,
        });
        self.read(port)
    }

    fn read(&self, port: u16) -> Option<PathBuf> {
        if !private_dir(&self.dir) {
            return None;
        }
        let file = self.file(port);
        let meta = std::fs::symlink_metadata(&file).ok()?;
        if !meta.is_file() || Some(meta.uid()) != my_uid() {
            return None;
        }
        let text = std::fs::read_to_string(&file).ok()?;
        let dir = PathBuf::from(text.trim_end_matches('\n'));
        dir.is_absolute().then_some(dir)
    }
}

/// This process's user id: the owner of `/proc/self` (Linux), without `unsafe`.
/// None where there is no /proc: dev dirs are then never looked up.
fn my_uid() -> Option<u32> {
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

/// A real directory (not a link) of this user that group and others cannot enter.
fn private_dir(dir: &Path) -> bool {
    std::fs::symlink_metadata(dir).is_ok_and(|m| {
        m.is_dir() && Some(m.uid()) == my_uid() && m.permissions().mode() & 0o077 == 0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str, mode: u32) {
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn flags_then_env_then_the_dev_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let dev = tmp.path().join("dev");
        std::fs::create_dir(&dev).unwrap();
        write(&dev.join(ADMIN_TOKEN_FILE), "dev-admin\n", 0o600);
        write(&dev.join(CLIENT_TOKEN_FILE), "dev-client\n", 0o600);
        let flag = tmp.path().join("flag.token");
        write(&flag, "from-file\n", 0o600);
        let pointers = DevPointers::at(tmp.path().join("run"));
        pointers.register(7400, &dev).unwrap();
        let local = vec!["http://127.0.0.1:7400".to_string()];
        let remote = vec!["http://10.1.1.1:7400".to_string()];
        let other_port = vec!["http://127.0.0.1:7500".to_string()];
        let none = Sources::default();
        let env = Sources {
            admin_env: Some("env-admin".into()),
            client_env: Some("env-client".into()),
            ..Default::default()
        };
        let files = Sources {
            admin_file: Some(flag.clone()),
            client_file: Some(flag.clone()),
            admin_env: Some("env-admin".into()),
            client_env: Some("env-client".into()),
        };
        let admin_env_only = Sources {
            admin_env: Some("env-admin".into()),
            ..Default::default()
        };
        let t = |s: &Sources, n: Needs, c: &[String]| s.token_for(n, c, &pointers).unwrap();
        let some = |s: &str| Some(s.to_string());
        assert_eq!(t(&none, Needs::Nothing, &local), None);
        assert_eq!(t(&none, Needs::Admin, &local), some("dev-admin"));
        assert_eq!(t(&none, Needs::Client, &local), some("dev-client"));
        assert_eq!(t(&none, Needs::Client, &remote), None);
        assert_eq!(t(&none, Needs::Client, &other_port), None);
        let list = [remote[0].clone(), local[0].clone()];
        assert_eq!(t(&none, Needs::Admin, &list), some("dev-admin"));
        assert_eq!(t(&env, Needs::Admin, &local), some("env-admin"));
        assert_eq!(t(&env, Needs::Client, &local), some("env-client"));
        assert_eq!(t(&files, Needs::Admin, &local), some("from-file"));
        assert_eq!(t(&files, Needs::Client, &remote), some("from-file"));
        // No client token anywhere: the admin token, which the coordinator takes too.
        assert_eq!(
            t(&admin_env_only, Needs::Client, &remote),
            some("env-admin")
        );

        // A token file others can read is refused with the fix.
        write(&flag, "from-file\n", 0o644);
        let e = files
            .token_for(Needs::Admin, &local, &pointers)
            .unwrap_err()
            .to_string();
        assert!(e.contains("chmod 600"), "{e}");

        // The pointer goes with its cluster, and only if it is still that cluster's.
        pointers.unregister(7400, &tmp.path().join("elsewhere"));
        assert_eq!(pointers.lookup("http://localhost:7400/"), Some(dev.clone()));
        pointers.unregister(7400, &dev);
        assert_eq!(pointers.lookup("http://127.0.0.1:7400"), None);
    }

    #[test]
    fn pointers_in_a_directory_others_can_enter_are_ignored() {
        let tmp = tempfile::tempdir().unwrap();
        let run = tmp.path().join("run");
        let pointers = DevPointers::at(run.clone());
        pointers.register(7400, tmp.path()).unwrap();
        assert_eq!(
            pointers.lookup("http://[::1]:7400"),
            Some(tmp.path().into())
        );
        std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(pointers.lookup("http://127.0.0.1:7400"), None);
        let e = pointers.register(7400, tmp.path()).unwrap_err().to_string();
        assert!(e.contains("closed to others"), "{e}");
    }
}
