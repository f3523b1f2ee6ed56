//! Fault injection: the points where a move can be interrupted or raced, and
//! the kernel features it has fallbacks for. Outside tests every hook is an
//! empty inline function the compiler removes; in tests the switches are
//! per thread, so parallel tests do not see each other's.

use std::io;

/// A point of the move where a test can fail it or act as another process.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Step {
    /// Every check passed (source, info, destination walk), nothing published yet.
    AfterChecks,
    /// Before the temporary file of a copy is created.
    CreateTemp,
    /// The copy is complete, not yet synced or published.
    AfterCopy,
    /// Before the link or rename that publishes.
    Publish,
    /// Before the `<ID>.refused` marker is created.
    MarkRefused,
}

/// A kernel or filesystem feature the mover has a fallback for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Feature {
    /// `openat2` (Linux 5.6): else directories are walked name by name.
    Openat2,
    /// `linkat(AT_EMPTY_PATH)` without `CAP_DAC_READ_SEARCH` (Linux 6.10).
    EmptyPath,
    /// `/proc/self/fd` (else, with `EmptyPath` off too, the move copies).
    ProcFd,
    /// `renameat2(RENAME_NOREPLACE)` (else link + unlink of the temporary file).
    Renameat2,
}

// ----------------------------------------------------------------------------------
// Outside tests: nothing happens.
// ----------------------------------------------------------------------------------

/// A failure injected at `step`, else `Ok`.
#[cfg(not(test))]
#[inline(always)]
pub(super) fn check(_: Step) -> io::Result<()> {
    Ok(())
}

/// Whether to copy even on the same filesystem.
#[cfg(not(test))]
#[inline(always)]
pub(super) fn force_copy() -> bool {
    false
}

/// Whether to act as if `feature` were missing.
#[cfg(not(test))]
#[inline(always)]
pub(super) fn unsupported(_: Feature) -> bool {
    false
}

/// Another writer creates `dst` between the checks and the publish.
#[cfg(not(test))]
#[inline(always)]
pub(super) fn race(_: &std::path::Path) {}

// ----------------------------------------------------------------------------------
// Tests: per-thread switches.
// ----------------------------------------------------------------------------------

#[cfg(test)]
type Hook = Box<dyn FnOnce()>;

#[cfg(test)]
thread_local! {
    static HOOKS: std::cell::RefCell<Vec<(Step, Hook)>> = const { std::cell::RefCell::new(Vec::new()) };
    static FAIL_AT: std::cell::Cell<Option<Step>> = const { std::cell::Cell::new(None) };
    static FORCE_COPY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static RACE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static UNSUPPORTED: std::cell::RefCell<Vec<Feature>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs the hooks due at `step` (see [`on`]), then fails if [`fail_at`] asked.
#[cfg(test)]
pub(super) fn check(step: Step) -> io::Result<()> {
    let due: Vec<Hook> = HOOKS.with(|h| {
        let mut h = h.borrow_mut();
        let (due, rest) = h.drain(..).partition(|(s, _)| *s == step);
        *h = rest;
        due.into_iter().map(|(_, f)| f).collect()
    });
    for f in due {
        f();
    }
    if FAIL_AT.with(|f| f.get()) == Some(step) {
        return Err(io::Error::other("injected fault"));
    }
    Ok(())
}

/// Whether [`set_force_copy`] is on.
#[cfg(test)]
pub(super) fn force_copy() -> bool {
    FORCE_COPY.with(|f| f.get())
}

/// Whether [`set_unsupported`] named `feature`.
#[cfg(test)]
pub(super) fn unsupported(feature: Feature) -> bool {
    UNSUPPORTED.with(|u| u.borrow().contains(&feature))
}

/// Another writer creates the destination between the checks and the publish.
#[cfg(test)]
pub(super) fn race(dst: &std::path::Path) {
    if RACE.with(|r| r.get()) {
        std::fs::write(dst, b"racer").unwrap();
    }
}

/// Turns [`race`] on or off.
#[cfg(test)]
pub(super) fn set_race(on: bool) {
    RACE.with(|r| r.set(on));
}

/// Runs `f` (once) when the move reaches `step`: what another process with
/// write access to a directory could do at that moment.
#[cfg(test)]
pub(super) fn on(step: Step, f: impl FnOnce() + 'static) {
    HOOKS.with(|h| h.borrow_mut().push((step, Box::new(f))));
}

/// Makes [`check`] fail at `step` (`None`: nowhere).
#[cfg(test)]
pub(super) fn fail_at(step: Option<Step>) {
    FAIL_AT.with(|f| f.set(step));
}

/// Copies even on the same filesystem.
#[cfg(test)]
pub(super) fn set_force_copy(on: bool) {
    FORCE_COPY.with(|f| f.set(on));
}

/// Pretend this thread's kernel and filesystems lack `features`.
#[cfg(test)]
pub(super) fn set_unsupported(features: &[Feature]) {
    UNSUPPORTED.with(|u| *u.borrow_mut() = features.to_vec());
}
