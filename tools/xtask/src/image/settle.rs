//! How a build settles on its lock, as cargo does with Cargo.lock: the committed lock while
//! every locked `.deb` can be had; a fresh resolution, each change printed, when it cannot (or
//! when it predates suites); never a change with `--locked`. The archive, the cache and the
//! lock file are reached through [`LockInputs`], so every path is tested without a network.

use std::path::PathBuf;

use anyhow::{Result, bail, ensure};
use pew_image::lock::PackageLock;

use super::archive::{self, Availability};

/// What the build asked of the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockPolicy {
    /// Use it while it can be had, re-resolve when it cannot.
    Refresh,
    /// Never change it.
    Locked,
    /// Re-resolve first.
    Update,
}

/// Where a lock comes from and where its files are.
pub trait LockInputs {
    /// The committed lock, if there is one.
    fn committed(&self) -> Result<Option<PackageLock>>;
    /// A resolution afresh from the archive.
    fn resolve(&self) -> Result<PackageLock>;
    /// Replaces the committed lock with `new` (after `old`, whose changes are reported).
    fn write(&self, old: Option<&PackageLock>, new: &PackageLock) -> Result<()>;
    /// Fills the cache with every `.deb` of `lock`, unless some are gone.
    fn fill(&self, lock: &PackageLock) -> Result<Availability>;
    /// Says what is happening.
    fn say(&self, line: &str);
    /// The lock file's name, for messages.
    fn name(&self) -> String;
}

/// The lock to build from and the directory of its verified `.deb`s.
pub fn settle(policy: LockPolicy, inputs: &impl LockInputs) -> Result<(PackageLock, PathBuf)> {
    let committed = inputs.committed()?;
    let name = inputs.name();
    let mut lock = match (&committed, policy) {
        (None, LockPolicy::Locked) => bail!("{name} is missing and --locked forbids resolving it"),
        (None, _) | (Some(_), LockPolicy::Update) => refresh(inputs, committed.as_ref())?,
        (Some(lock), _) if !lock.records_suites() && policy == LockPolicy::Refresh => {
            inputs.say(&format!(
                "{name} does not record the suite of each package: re-resolving it"
            ));
            refresh(inputs, Some(lock))?
        }
        (Some(lock), _) => lock.clone(),
    };
    loop {
        let gone = match inputs.fill(&lock)? {
            Availability::Complete(debs) => return Ok((lock, debs)),
            Availability::Gone(gone) => gone,
        };
        if policy == LockPolicy::Locked {
            bail!(
                "{name} is --locked, but {} of its packages are in neither the cache nor the \
                 archive any more: {}\n(a release's published .deb set holds them: --debs DIR; \
                 without --locked the lock is re-resolved)",
                gone.len(),
                archive::describe_packages(&gone)
            );
        }
        inputs.say(&format!(
            "the archive no longer has {} locked packages ({}): re-resolving {name}",
            gone.len(),
            archive::describe_packages(&gone)
        ));
        let fresh = refresh(inputs, Some(&lock))?;
        ensure!(
            fresh != lock,
            "re-resolving {name} gave the same lock, whose packages the archive does not have"
        );
        lock = fresh;
    }
}

fn refresh(inputs: &impl LockInputs, old: Option<&PackageLock>) -> Result<PackageLock> {
    let fresh = inputs.resolve()?;
    inputs.write(old, &fresh)?;
    Ok(fresh)
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use pew_image::lock::LockedPackage;

    use super::*;

    const HASH: &str = "1111111111111111111111111111111111111111111111111111111111111111";

    fn lock(entries: &[(&str, &str, Option<&str>)]) -> PackageLock {
        PackageLock::from_packages(
            entries
                .iter()
                .map(|(name, version, suite)| {
                    LockedPackage::new(
                        name,
                        version,
                        "arm64",
                        *suite,
                        HASH,
                        &format!("{name}_{version}_arm64.deb"),
                    )
                    .unwrap()
                })
                .collect(),
        )
        .unwrap()
    }

    /// An archive that offers `offered` versions, a committed lock, and what happened.
    struct Fake {
        committed: RefCell<Option<PackageLock>>,
        offered: PackageLock,
        resolutions: RefCell<u32>,
        said: RefCell<Vec<String>>,
    }

    impl Fake {
        fn new(committed: Option<PackageLock>, offered: PackageLock) -> Self {
            Self {
                committed: RefCell::new(committed),
                offered,
                resolutions: RefCell::new(0),
                said: RefCell::new(Vec::new()),
            }
        }
    }

    impl LockInputs for Fake {
        fn committed(&self) -> Result<Option<PackageLock>> {
            Ok(self.committed.borrow().clone())
        }
        fn resolve(&self) -> Result<PackageLock> {
            *self.resolutions.borrow_mut() += 1;
            Ok(self.offered.clone())
        }
        fn write(&self, old: Option<&PackageLock>, new: &PackageLock) -> Result<()> {
            if let Some(old) = old {
                for change in old.changes(new) {
                    self.say(&change.to_string());
                }
            }
            *self.committed.borrow_mut() = Some(new.clone());
            Ok(())
        }
        fn fill(&self, lock: &PackageLock) -> Result<Availability> {
            let gone: Vec<LockedPackage> = lock
                .packages()
                .iter()
                .filter(|p| !self.offered.packages().iter().any(|o| o.same_file(p)))
                .cloned()
                .collect();
            Ok(if gone.is_empty() {
                Availability::Complete(PathBuf::from("debs"))
            } else {
                Availability::Gone(gone)
            })
        }
        fn say(&self, line: &str) {
            self.said.borrow_mut().push(line.to_owned());
        }
        fn name(&self) -> String {
            "image/pew.lock".into()
        }
    }

    #[test]
    fn a_lock_the_archive_still_has_is_used_as_it_is() {
        let committed = lock(&[("libc6", "2.41-12", Some("trixie"))]);
        let fake = Fake::new(Some(committed.clone()), committed.clone());
        let (settled, _) = settle(LockPolicy::Refresh, &fake).unwrap();
        assert_eq!(settled, committed);
        assert_eq!(*fake.resolutions.borrow(), 0);
        assert!(fake.said.borrow().is_empty());
    }

    #[test]
    fn gone_versions_are_re_resolved_with_each_change_said_and_the_lock_rewritten() {
        let committed = lock(&[
            ("libc6", "2.41-12", Some("trixie")),
            ("tzdata", "2026a", Some("trixie")),
        ]);
        let offered = lock(&[
            ("libc6", "2.41-12+deb13u1", Some("trixie-security")),
            ("tzdata", "2026a", Some("trixie")),
        ]);
        let fake = Fake::new(Some(committed), offered.clone());
        let (settled, _) = settle(LockPolicy::Refresh, &fake).unwrap();
        assert_eq!(settled, offered);
        assert_eq!(fake.committed.borrow().as_ref(), Some(&offered));
        let said = fake.said.borrow();
        assert!(said[0].contains("no longer has 1 locked packages (libc6 2.41-12 (arm64))"));
        assert_eq!(
            said[1],
            " Updating libc6:arm64 2.41-12 -> 2.41-12+deb13u1 (trixie-security) [security]"
        );
    }

    #[test]
    fn locked_refuses_naming_every_missing_package_and_leaves_the_lock() {
        let committed = lock(&[
            ("libc6", "2.41-12", Some("trixie")),
            ("openssl", "3.5.7", Some("trixie")),
        ]);
        let offered = lock(&[("libc6", "2.41-13", Some("trixie"))]);
        let fake = Fake::new(Some(committed.clone()), offered);
        let error = settle(LockPolicy::Locked, &fake).unwrap_err().to_string();
        assert!(error.contains("--locked"), "{error}");
        assert!(
            error.contains("libc6 2.41-12 (arm64), openssl 3.5.7 (arm64)"),
            "{error}"
        );
        assert_eq!(*fake.resolutions.borrow(), 0);
        assert_eq!(fake.committed.borrow().as_ref(), Some(&committed));
    }

    #[test]
    fn a_lock_without_suites_is_re_resolved_unless_locked() {
        let legacy = lock(&[("libc6", "2.41-12", None)]);
        let offered = lock(&[("libc6", "2.41-12", Some("trixie"))]);
        let fake = Fake::new(Some(legacy.clone()), offered.clone());
        assert_eq!(settle(LockPolicy::Refresh, &fake).unwrap().0, offered);
        assert!(fake.said.borrow()[0].contains("does not record the suite"));

        let fake = Fake::new(Some(legacy.clone()), offered);
        assert_eq!(settle(LockPolicy::Locked, &fake).unwrap().0, legacy);
        assert_eq!(*fake.resolutions.borrow(), 0);
    }

    #[test]
    fn update_resolves_first_and_a_missing_lock_is_resolved_unless_locked() {
        let offered = lock(&[("libc6", "2.41-12", Some("trixie"))]);
        let fake = Fake::new(Some(offered.clone()), offered.clone());
        settle(LockPolicy::Update, &fake).unwrap();
        assert_eq!(*fake.resolutions.borrow(), 1);

        let fake = Fake::new(None, offered.clone());
        assert_eq!(settle(LockPolicy::Refresh, &fake).unwrap().0, offered);
        let fake = Fake::new(None, offered);
        assert!(settle(LockPolicy::Locked, &fake).is_err());
    }

    #[test]
    fn an_archive_that_cannot_serve_its_own_resolution_stops_instead_of_looping() {
        /// Resolves to a lock whose files it then says are gone.
        struct Broken(Fake);
        impl LockInputs for Broken {
            fn committed(&self) -> Result<Option<PackageLock>> {
                self.0.committed()
            }
            fn resolve(&self) -> Result<PackageLock> {
                self.0.resolve()
            }
            fn write(&self, old: Option<&PackageLock>, new: &PackageLock) -> Result<()> {
                self.0.write(old, new)
            }
            fn fill(&self, lock: &PackageLock) -> Result<Availability> {
                Ok(Availability::Gone(lock.packages().to_vec()))
            }
            fn say(&self, line: &str) {
                self.0.say(line);
            }
            fn name(&self) -> String {
                self.0.name()
            }
        }
        let offered = lock(&[("libc6", "2.41-12", Some("trixie"))]);
        let broken = Broken(Fake::new(
            Some(lock(&[("libc6", "1", Some("trixie"))])),
            offered,
        ));
        let error = settle(LockPolicy::Refresh, &broken)
            .unwrap_err()
            .to_string();
        assert!(error.contains("gave the same lock"), "{error}");
    }
}
