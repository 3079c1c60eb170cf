//! Declaring settings: a small builder on [`SettingSpec`].
//!
//! ```
//! use autoscaler_sdk::SettingSpec;
//!
//! let specs = vec![
//!     SettingSpec::number("cpu.upper").default("0.8").doc("mean CPU at which to add a replica"),
//!     SettingSpec::quantity("memory.upper").doc("mean memory in bytes (512Mi, 1G)"),
//!     SettingSpec::duration("hold").default("2m").doc("how long to hold scale-in after a scale-out"),
//!     SettingSpec::text("mode").required().doc("fast or careful"),
//! ];
//! assert_eq!(specs[0].default.as_deref(), Some("0.8"));
//! assert!(specs[3].required);
//! ```

use crate::{SettingSpec, SettingType};

impl SettingSpec {
    /// A setting `name` (the label `autoscale.<name>`) of type `kind`:
    /// optional, no default, no doc. Prefer the typed constructors.
    pub fn new(name: impl Into<String>, kind: SettingType) -> Self {
        SettingSpec { name: name.into(), kind, required: false, default: None, doc: String::new() }
    }

    /// A plain number (`0.8`, `3`), read with [`State::number`](crate::State::number).
    pub fn number(name: impl Into<String>) -> Self {
        Self::new(name, SettingType::Number)
    }

    /// A number with an optional SI or binary suffix (`512Mi`, `1.5G`, `2k`),
    /// read with [`State::number`](crate::State::number).
    pub fn quantity(name: impl Into<String>) -> Self {
        Self::new(name, SettingType::Quantity)
    }

    /// A duration with a unit (`30s`, `500ms`, `2m`) or `0`, read with
    /// [`State::duration`](crate::State::duration).
    pub fn duration(name: impl Into<String>) -> Self {
        Self::new(name, SettingType::Duration)
    }

    /// A boolean (`true`/`false`, `yes`/`no`, `on`/`off`, `1`/`0`), read with
    /// [`State::flag`](crate::State::flag).
    pub fn flag(name: impl Into<String>) -> Self {
        Self::new(name, SettingType::Flag)
    }

    /// Free text, read with [`State::text`](crate::State::text).
    pub fn text(name: impl Into<String>) -> Self {
        Self::new(name, SettingType::Text)
    }

    /// One line for people: what it means, in which unit. Shown by
    /// `host policy check`.
    pub fn doc(mut self, doc: impl Into<String>) -> Self {
        self.doc = doc.into();
        self
    }

    /// The value used when the label is absent, written as a label value
    /// would be (`0.8`, `30s`, `512Mi`); the daemon parses it by the same
    /// rules and refuses the policy if it does not parse.
    pub fn default(mut self, value: impl Into<String>) -> Self {
        self.default = Some(value.into());
        self
    }

    /// The daemon refuses a service that uses this policy without this label,
    /// with a message naming the label.
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }
}

impl SettingType {
    /// The WIT case name: `number`, `quantity`, `duration`, `flag`, `text`.
    pub fn name(&self) -> &'static str {
        match self {
            SettingType::Number => "number",
            SettingType::Quantity => "quantity",
            SettingType::Duration => "duration",
            SettingType::Flag => "flag",
            SettingType::Text => "text",
        }
    }
}
