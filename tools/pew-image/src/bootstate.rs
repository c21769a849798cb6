//! The A/B slot state shared by U-Boot's boot script and Linux (pew-updated), and the rules both
//! apply to it.
//!
//! The state is a text file, [`ENV_FILE_NAME`], at the root of the boot FAT partition. It is
//! exactly what U-Boot's `env export -t <addr> PEW_A_LEFT PEW_BOOT_ORDER PEW_B_LEFT` writes:
//! `name=value` lines sorted by name, each ended by `\n`, then one NUL byte (U-Boot counts the
//! terminator in `${filesize}`, so `fatwrite` stores it):
//!
//! ```text
//! PEW_A_LEFT=2
//! PEW_BOOT_ORDER=A B
//! PEW_B_LEFT=0
//! ```
//!
//! Values are never quoted: `env import -t` would keep quotes as part of the value.
//!
//! - `PEW_BOOT_ORDER` is `A B` or `B A`: the first slot is the primary.
//! - `PEW_<slot>_LEFT` is a single digit, the boot attempts that slot has left.
//!
//! Every state formats to the same length (46 bytes), so U-Boot's `fatwrite` and Linux rewrite
//! the file in place within one cluster instead of allocating new ones: a power cut mid-write
//! can then damage at most that one sector. That is also why counters stop at 9
//! ([`Attempts::MAX`]), and why the boot script needs no arithmetic (hush has none: it
//! decrements by looking the digit up).
//!
//! [`BootState::from_env_text`] reads a file the way the boot script does, including its
//! tolerance of damage (any unreadable counter counts as 0, any unreadable order as `A B`), so
//! Linux always knows which slot U-Boot will pick next. [`BootState::select`] is the script's
//! choice, written again in Rust so it can be tested exhaustively; the script generator in
//! [`crate::bootscript`] and this module share the names below.

use std::fmt;

use crate::layout::PartitionRole;

/// The slot-state file at the root of the boot partition.
pub const ENV_FILE_NAME: &str = "pewboot.env";
/// The variable holding the boot order.
pub const ORDER_VARIABLE: &str = "PEW_BOOT_ORDER";

/// The state file's variables, sorted by name as `env export` writes them.
pub fn state_variables() -> [&'static str; 3] {
    let mut names = [
        ORDER_VARIABLE,
        Slot::A.attempts_variable(),
        Slot::B.attempts_variable(),
    ];
    names.sort_unstable();
    names
}

/// One of the two system slots.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Slot {
    A,
    B,
}

impl Slot {
    pub const ALL: [Slot; 2] = [Slot::A, Slot::B];

    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }

    /// The letter used in the state file, in `pew.slot=` and in variable names.
    pub fn letter(self) -> &'static str {
        match self {
            Slot::A => "A",
            Slot::B => "B",
        }
    }

    /// The variable holding this slot's remaining attempts: `PEW_A_LEFT`, `PEW_B_LEFT`.
    pub fn attempts_variable(self) -> &'static str {
        match self {
            Slot::A => "PEW_A_LEFT",
            Slot::B => "PEW_B_LEFT",
        }
    }

    pub fn partition(self) -> PartitionRole {
        match self {
            Slot::A => PartitionRole::SystemA,
            Slot::B => PartitionRole::SystemB,
        }
    }

    fn index(self) -> usize {
        match self {
            Slot::A => 0,
            Slot::B => 1,
        }
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.letter())
    }
}

/// Boot attempts a slot gets before the other one is tried: 1 to 9.
#[derive(Clone, Copy, PartialEq, Eq, Debug, PartialOrd, Ord)]
pub struct Attempts(u8);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("boot attempts must be 1 to {max} (one digit keeps the slot-state file a fixed size), got {0}", max = Attempts::MAX)]
pub struct AttemptsError(pub i64);

impl Attempts {
    pub const MAX: u8 = 9;
    /// Three, not one: a solar node can lose power during a trial boot, and a single brownout
    /// must not roll back a good update (meta-balena raised its limit for the same reason).
    pub const DEFAULT: Attempts = Attempts(3);

    pub fn new(count: i64) -> Result<Self, AttemptsError> {
        match u8::try_from(count) {
            Ok(n) if (1..=Self::MAX).contains(&n) => Ok(Self(n)),
            _ => Err(AttemptsError(count)),
        }
    }

    pub fn get(self) -> u8 {
        self.0
    }
}

impl Default for Attempts {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The slot state: which slot is primary and how many attempts each has left (0 to 9).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct BootState {
    primary: Slot,
    left: [u8; 2],
}

/// What the boot script does on one boot.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Selection {
    /// The slot booted.
    pub slot: Slot,
    /// The state saved before booting, with the booted slot's counter already decremented.
    pub state: BootState,
    /// Every slot had run out of attempts, so both counters were refilled and the primary slot
    /// tried again: a node must keep trying rather than stop in U-Boot.
    pub counters_reset: bool,
}

/// Something in the state file that the boot script would not accept as written.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum EnvIssue {
    /// The variable is absent (or empty, which `env import` treats as a deletion).
    Missing(&'static str),
    /// The value is not one the script recognises; the script uses the fallback instead.
    Unrecognised {
        variable: &'static str,
        value: String,
    },
}

impl fmt::Display for EnvIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnvIssue::Missing(variable) => write!(f, "{variable} is missing"),
            EnvIssue::Unrecognised { variable, value } => {
                write!(f, "{variable} has unrecognised value {value:?}")
            }
        }
    }
}

/// A state file as the boot script will understand it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ReadState {
    pub state: BootState,
    /// Empty for a file U-Boot or [`BootState::to_env_text`] wrote.
    pub issues: Vec<EnvIssue>,
}

impl BootState {
    /// The state a freshly flashed card starts with: slot A primary with a full set of attempts,
    /// slot B empty (the image ships only A's system) and therefore at 0.
    pub fn factory(attempts: Attempts) -> Self {
        Self {
            primary: Slot::A,
            left: [attempts.get(), 0],
        }
    }

    pub fn primary(&self) -> Slot {
        self.primary
    }

    /// Slots in the order the boot script tries them.
    pub fn order(&self) -> [Slot; 2] {
        [self.primary, self.primary.other()]
    }

    pub fn attempts_left(&self, slot: Slot) -> u8 {
        self.left[slot.index()]
    }

    /// The boot script's decision: the first slot in order with attempts left, its counter
    /// decremented. If none has any left, both are refilled to `attempts` and the primary is
    /// tried.
    pub fn select(&self, attempts: Attempts) -> Selection {
        let (slot, mut state, counters_reset) = match self
            .order()
            .into_iter()
            .find(|&slot| self.attempts_left(slot) > 0)
        {
            Some(slot) => (slot, *self, false),
            None => (
                self.primary,
                Self {
                    primary: self.primary,
                    left: [attempts.get(); 2],
                },
                true,
            ),
        };
        state.left[slot.index()] -= 1;
        Selection {
            slot,
            state,
            counters_reset,
        }
    }

    /// Linux confirmed that `slot` booted and is healthy: it becomes the primary with a full set
    /// of attempts. Making it primary matters after a rollback: the slot that failed keeps its
    /// 0 and is not tried again unless every slot runs out.
    pub fn mark_good(&self, slot: Slot, attempts: Attempts) -> Self {
        let mut state = Self {
            primary: slot,
            left: self.left,
        };
        state.left[slot.index()] = attempts.get();
        state
    }

    /// `slot` must not be booted (an update into it is being written, or it failed a check).
    pub fn mark_bad(&self, slot: Slot) -> Self {
        let mut state = *self;
        state.left[slot.index()] = 0;
        state
    }

    /// An update was written to `slot`: try it first on the next boot, `attempts` times. The
    /// previous primary keeps its counter and is the fallback.
    pub fn activate(&self, slot: Slot, attempts: Attempts) -> Self {
        let mut state = Self {
            primary: slot,
            left: self.left,
        };
        state.left[slot.index()] = attempts.get();
        state
    }

    /// The file exactly as `env export -t` writes it (see the module documentation).
    pub fn to_env_text(&self) -> Vec<u8> {
        let value_of = |name: &str| match Slot::ALL
            .into_iter()
            .find(|slot| slot.attempts_variable() == name)
        {
            Some(slot) => self.attempts_left(slot).to_string(),
            None => self.order().map(Slot::letter).join(" "),
        };
        let mut text = Vec::new();
        for name in state_variables() {
            text.extend_from_slice(format!("{name}={}\n", value_of(name)).as_bytes());
        }
        text.push(0);
        text
    }

    /// Reads a state file the way `env import -t <addr> <size> PEW_BOOT_ORDER PEW_A_LEFT
    /// PEW_B_LEFT` followed by the boot script's checks does. Never fails: a node must boot
    /// whatever is in the file; what had to be guessed is listed in [`ReadState::issues`].
    pub fn from_env_text(bytes: &[u8]) -> ReadState {
        let variables = import_text(bytes, &state_variables());
        let mut issues = Vec::new();
        let mut value_of = |name: &'static str| {
            let value = variables
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, value)| value.as_str());
            if value.is_none() {
                issues.push(EnvIssue::Missing(name));
            }
            value.map(str::to_owned)
        };
        let order = value_of(ORDER_VARIABLE);
        let counters = Slot::ALL.map(|slot| value_of(slot.attempts_variable()));

        let primary = match order.as_deref() {
            Some("B A") => Slot::B,
            Some("A B") | None => Slot::A,
            Some(other) => {
                issues.push(EnvIssue::Unrecognised {
                    variable: ORDER_VARIABLE,
                    value: other.to_owned(),
                });
                Slot::A
            }
        };
        let mut left = [0; 2];
        for (slot, value) in Slot::ALL.into_iter().zip(counters) {
            let Some(value) = value else { continue };
            match parse_counter(&value) {
                Some(count) => left[slot.index()] = count,
                None => issues.push(EnvIssue::Unrecognised {
                    variable: slot.attempts_variable(),
                    value,
                }),
            }
        }
        ReadState {
            state: BootState { primary, left },
            issues,
        }
    }
}

/// A counter the script recognises: exactly one digit (it compares strings, `"03"` is not `"3"`).
fn parse_counter(value: &str) -> Option<u8> {
    match value.as_bytes() {
        [digit @ b'0'..=b'9'] => Some(digit - b'0'),
        _ => None,
    }
}

/// U-Boot's `himport_r` with `\n` as separator and a list of wanted names: the text ends at the
/// first NUL; leading blanks are skipped; `#` starts a comment; `name` or `name=` deletes;
/// a backslash escapes the next character of a value; the first occurrence of a wanted name is
/// the one imported (later ones are skipped because the name is struck off the wanted list).
/// Returns the wanted names that ended with a value.
fn import_text(bytes: &[u8], wanted: &[&'static str]) -> Vec<(&'static str, String)> {
    let text = bytes.split(|&b| b == 0).next().unwrap_or_default();
    let text = String::from_utf8_lossy(text);
    let mut pending: Vec<&'static str> = wanted.to_vec();
    let mut imported = Vec::new();
    for line in text.split('\n') {
        let line = line.trim_start_matches([' ', '\t']);
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (name, raw_value) = line.split_once('=').unwrap_or((line, ""));
        if name.is_empty() && !raw_value.is_empty() {
            // `=value`: himport_r gives up on the rest of the text.
            break;
        }
        let Some(position) = pending.iter().position(|&wanted_name| wanted_name == name) else {
            continue;
        };
        let name = pending.remove(position);
        let value = unescape(raw_value);
        if !value.is_empty() {
            imported.push((name, value));
        }
    }
    imported
}

fn unescape(raw: &str) -> String {
    let mut value = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match (c, chars.clone().next()) {
            ('\\', Some(escaped)) => {
                value.push(escaped);
                chars.next();
            }
            _ => value.push(c),
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    const THREE: Attempts = Attempts::DEFAULT;

    fn state(primary: Slot, a: u8, b: u8) -> BootState {
        BootState {
            primary,
            left: [a, b],
        }
    }

    /// Boots once: what U-Boot does, and what it leaves in the file.
    fn boot(current: BootState) -> (Slot, BootState) {
        let selection = current.select(THREE);
        let written = BootState::from_env_text(&selection.state.to_env_text());
        assert!(written.issues.is_empty());
        assert_eq!(
            written.state, selection.state,
            "the saved file must read back as the new state"
        );
        (selection.slot, selection.state)
    }

    #[test]
    fn variables_are_in_strcmp_order() {
        assert_eq!(
            state_variables(),
            ["PEW_A_LEFT", "PEW_BOOT_ORDER", "PEW_B_LEFT"]
        );
    }

    #[test]
    fn file_is_byte_identical_to_uboot_env_export() {
        // Sorted by strcmp: "PEW_A_LEFT" < "PEW_BOOT_ORDER" ('O' < '_') < "PEW_B_LEFT".
        assert_eq!(
            state(Slot::B, 2, 3).to_env_text(),
            b"PEW_A_LEFT=2\nPEW_BOOT_ORDER=B A\nPEW_B_LEFT=3\n\0".to_vec()
        );
    }

    #[test]
    fn every_state_has_the_same_file_length() {
        for primary in Slot::ALL {
            for a in 0..=9 {
                for b in 0..=9 {
                    assert_eq!(state(primary, a, b).to_env_text().len(), 46);
                }
            }
        }
    }

    #[test]
    fn factory_state_boots_a_and_counts_the_attempt() {
        let factory = BootState::factory(THREE);
        assert_eq!(
            factory.to_env_text(),
            b"PEW_A_LEFT=3\nPEW_BOOT_ORDER=A B\nPEW_B_LEFT=0\n\0".to_vec()
        );
        let (slot, after) = boot(factory);
        assert_eq!(slot, Slot::A);
        assert_eq!(after, state(Slot::A, 2, 0));
    }

    #[test]
    fn confirmed_boots_keep_a_slot_forever() {
        let mut current = BootState::factory(THREE);
        for _ in 0..100 {
            let (slot, after) = boot(current);
            assert_eq!(slot, Slot::A);
            current = after.mark_good(slot, THREE);
        }
        assert_eq!(current, state(Slot::A, 3, 0));
    }

    #[test]
    fn successful_update_trial_makes_the_new_slot_primary() {
        let installed = state(Slot::A, 3, 0).activate(Slot::B, THREE);
        assert_eq!(installed, state(Slot::B, 3, 3));
        let (slot, after) = boot(installed);
        assert_eq!(slot, Slot::B);
        assert_eq!(after, state(Slot::B, 3, 2));
        assert_eq!(after.mark_good(Slot::B, THREE), state(Slot::B, 3, 3));
    }

    #[test]
    fn power_loss_during_trials_costs_attempts_but_not_the_update() {
        // Two brownouts during the trial boot of B (no mark_good), then a good boot.
        let mut current = state(Slot::A, 3, 0).activate(Slot::B, THREE);
        for expected_left in [2, 1] {
            let (slot, after) = boot(current);
            assert_eq!(
                (slot, after.attempts_left(Slot::B)),
                (Slot::B, expected_left)
            );
            current = after;
        }
        let (slot, after) = boot(current);
        assert_eq!((slot, after.attempts_left(Slot::B)), (Slot::B, 0));
        assert_eq!(after.mark_good(slot, THREE), state(Slot::B, 3, 3));
    }

    #[test]
    fn a_slot_that_never_confirms_rolls_back_after_exactly_its_attempts() {
        let mut current = state(Slot::A, 3, 0).activate(Slot::B, THREE);
        let mut booted = Vec::new();
        for _ in 0..4 {
            let (slot, after) = boot(current);
            booted.push(slot);
            current = after;
        }
        assert_eq!(booted, [Slot::B, Slot::B, Slot::B, Slot::A]);
        // The old system confirms and takes over; the failed slot stays at 0.
        let rolled_back = current.mark_good(Slot::A, THREE);
        assert_eq!(rolled_back, state(Slot::A, 3, 0));
        assert_eq!(boot(rolled_back).0, Slot::A);
    }

    #[test]
    fn exhaustion_refills_both_and_retries_the_primary_never_stopping() {
        let exhausted = state(Slot::B, 0, 0);
        let selection = exhausted.select(THREE);
        assert!(selection.counters_reset);
        assert_eq!(selection.slot, Slot::B);
        assert_eq!(selection.state, state(Slot::B, 3, 2));
        // Nothing ever confirms: the script alternates between slots forever, 3 boots each.
        let mut current = exhausted;
        let mut booted = String::new();
        for _ in 0..12 {
            let (slot, after) = boot(current);
            booted += slot.letter();
            current = after;
        }
        assert_eq!(booted, "BBBAAABBBAAA");
    }

    #[test]
    fn mark_bad_skips_a_slot() {
        let (slot, _) = boot(state(Slot::B, 3, 3).mark_bad(Slot::B));
        assert_eq!(slot, Slot::A);
    }

    #[test]
    fn attempts_outside_one_to_nine_are_refused() {
        assert_eq!(Attempts::new(0), Err(AttemptsError(0)));
        assert_eq!(Attempts::new(10), Err(AttemptsError(10)));
        assert_eq!(Attempts::new(-1), Err(AttemptsError(-1)));
        assert_eq!(Attempts::new(9).map(Attempts::get), Ok(9));
    }

    #[test]
    fn reads_a_file_without_the_nul_and_with_comments_blanks_and_other_variables() {
        let read = BootState::from_env_text(
            b"# written by hand\n  PEW_BOOT_ORDER=B A\nbootcmd=evil\nPEW_B_LEFT=1\nPEW_A_LEFT=3\n",
        );
        assert_eq!(read.state, state(Slot::B, 3, 1));
        assert!(read.issues.is_empty(), "{:?}", read.issues);
    }

    #[test]
    fn missing_or_damaged_file_falls_back_to_a_with_counters_at_zero() {
        for damaged in [&b""[..], b"\0\0\0\0", b"\xff\xfe garbage"] {
            let read = BootState::from_env_text(damaged);
            assert_eq!(read.state, state(Slot::A, 0, 0));
            assert_eq!(read.issues.len(), 3, "{:?}", read.issues);
            // ...which the script then treats as exhaustion: refill and boot A.
            assert_eq!(read.state.select(THREE).slot, Slot::A);
        }
    }

    #[test]
    fn unrecognised_values_read_as_the_script_reads_them() {
        let read =
            BootState::from_env_text(b"PEW_A_LEFT=03\nPEW_BOOT_ORDER=\"B A\"\nPEW_B_LEFT=2\r\n");
        assert_eq!(read.state, state(Slot::A, 0, 0));
        assert_eq!(
            read.issues,
            [
                EnvIssue::Unrecognised {
                    variable: "PEW_BOOT_ORDER",
                    value: "\"B A\"".into()
                },
                EnvIssue::Unrecognised {
                    variable: "PEW_A_LEFT",
                    value: "03".into()
                },
                EnvIssue::Unrecognised {
                    variable: "PEW_B_LEFT",
                    value: "2\r".into()
                },
            ]
        );
    }

    #[test]
    fn the_first_occurrence_wins_and_an_empty_value_deletes() {
        // With a variable list, himport_r strikes a name off after its first occurrence.
        let read = BootState::from_env_text(
            b"PEW_A_LEFT=1\nPEW_A_LEFT=5\nPEW_B_LEFT=\nPEW_B_LEFT=4\nPEW_BOOT_ORDER=A B\n",
        );
        assert_eq!(read.state, state(Slot::A, 1, 0));
        assert_eq!(read.issues, [EnvIssue::Missing("PEW_B_LEFT")]);
    }

    #[test]
    fn a_line_without_a_name_ends_the_import() {
        let read =
            BootState::from_env_text(b"PEW_A_LEFT=2\n=oops\nPEW_B_LEFT=3\nPEW_BOOT_ORDER=B A\n");
        assert_eq!(read.state, state(Slot::A, 2, 0));
        assert_eq!(
            read.issues,
            [
                EnvIssue::Missing("PEW_BOOT_ORDER"),
                EnvIssue::Missing("PEW_B_LEFT")
            ]
        );
    }

    #[test]
    fn backslash_escapes_are_undone_like_uboot() {
        let read =
            BootState::from_env_text(b"PEW_BOOT_ORDER=B\\ A\nPEW_A_LEFT=\\3\nPEW_B_LEFT=3\n");
        assert_eq!(read.state, state(Slot::B, 3, 3));
    }
}
