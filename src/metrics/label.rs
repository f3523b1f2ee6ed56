//! Closed label sets, and the registration helpers every concern's families
//! use: each label's values are known up front (an enum's `ALL`), so a family
//! pre-registers every series at 0 and a dashboard sees it, and a rate, from
//! the start; values come from `as_str`, never from request data, so the
//! series count is bounded.

use std::marker::PhantomData;

use prometheus::core::Collector;
use prometheus::{IntCounterVec, Opts, Registry};

/// A label whose values are a closed set.
pub trait Label: Copy + 'static {
    /// The label's name.
    const NAME: &'static str;
    /// Every value, for pre-registration.
    fn all() -> Vec<Self>;
    /// The label value.
    fn as_str(self) -> &'static str;
}

/// A closed set of label values: the enum, `ALL` (in declaration order),
/// `as_str`, `index` (the position in `ALL`) and [`Label`].
macro_rules! labels {
    ($(#[$m:meta])* $name:ident $label:literal { $($(#[$vm:meta])* $var:ident => $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $($(#[$vm])* $var),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: [$name; [$($s),+].len()] = [$($name::$var),+];

            /// Label value.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$var => $s),+
                }
            }

            /// Position in `ALL`.
            pub fn index(self) -> usize {
                self as usize
            }
        }

        impl $crate::metrics::Label for $name {
            const NAME: &'static str = $label;

            fn all() -> Vec<Self> {
                Self::ALL.to_vec()
            }

            fn as_str(self) -> &'static str {
                $name::as_str(self)
            }
        }
    };
}
pub(crate) use labels;

/// `family`, registered in `registry` (once: a second registration of a
/// name is a bug, and panics at start).
pub fn registered<C: Collector + Clone + 'static>(registry: &Registry, family: C) -> C {
    registry
        .register(Box::new(family.clone()))
        .expect("families are registered once");
    family
}

/// A counter family with one closed label, every value pre-registered at 0.
#[derive(Clone)]
pub struct Counters<L> {
    family: IntCounterVec,
    label: PhantomData<fn(L)>,
}

impl<L: Label> Counters<L> {
    /// Creates the family `name` (label [`Label::NAME`]), registers it and
    /// pre-registers every value of `L`.
    pub fn register(registry: &Registry, name: &str, help: &str) -> Self {
        let family = registered(
            registry,
            IntCounterVec::new(Opts::new(name, help), &[L::NAME]).expect("valid metric"),
        );
        for l in L::all() {
            family.with_label_values(&[l.as_str()]).inc_by(0);
        }
        Counters {
            family,
            label: PhantomData,
        }
    }

    /// Counts one.
    pub fn inc(&self, l: L) {
        self.inc_by(l, 1);
    }

    /// Counts `n`.
    pub fn inc_by(&self, l: L, n: u64) {
        self.family.with_label_values(&[l.as_str()]).inc_by(n);
    }
}
