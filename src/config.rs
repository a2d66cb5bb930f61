//! Module options: defaults, ranges and validation.
//!
//! The shim reads every option with Prosody's typed getters and hands the
//! results over as a [`RawConfig`]; [`Config::from_raw`] checks ranges and
//! falls back to the default, with a message for the log, where a value is
//! out of range.

use serde::Deserialize;

/// `push_notification_important_body`.
pub const DEFAULT_IMPORTANT_BODY: &str = "New Message!";
/// `push_max_devices`.
pub const DEFAULT_MAX_DEVICES: usize = 5;
/// `push_max_errors`.
pub const DEFAULT_MAX_ERRORS: u32 = 16;
/// `push_max_hibernation_timeout` (seconds).
pub const DEFAULT_MAX_HIBERNATION_TIMEOUT: u64 = 72 * 3600;
/// `push_registration_cache_size` (users).
pub const DEFAULT_CACHE_SIZE: usize = 10_000;
/// `push_response_timeout` (seconds).
pub const DEFAULT_PUSH_TIMEOUT: u64 = 120;
/// `push_max_pending`.
pub const DEFAULT_MAX_PENDING: usize = 10_000;
/// `push_wake_before_expiry` (seconds).
pub const DEFAULT_WAKE_BEFORE_EXPIRY: u64 = 60;
/// `push_retry_delays` (seconds).
pub const DEFAULT_RETRY_DELAYS: [f64; 3] = [5.0, 30.0, 120.0];
/// `push_max_retries`.
pub const DEFAULT_MAX_RETRIES: usize = 1000;
/// Longest grace period accepted (seconds).
pub const MAX_GRACE_PERIOD: u64 = 3600;

/// Options as the typed getters returned them (`None`: unset or wrong type).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct RawConfig {
    /// The option of that name (see the README's table).
    pub push_notification_with_body: Option<bool>,
    /// The option of that name.
    pub push_notification_with_sender: Option<bool>,
    /// The option of that name.
    pub push_notification_important_body: Option<String>,
    /// The option of that name.
    pub push_notification_with_counts: Option<bool>,
    /// The option of that name.
    pub push_max_devices: Option<f64>,
    /// The option of that name.
    pub push_max_errors: Option<f64>,
    /// The option of that name.
    pub push_max_hibernation_timeout: Option<f64>,
    /// The option of that name.
    pub push_registration_cache_size: Option<f64>,
    /// The option of that name.
    pub push_response_timeout: Option<f64>,
    /// The option of that name.
    pub push_max_pending: Option<f64>,
    /// The option of that name.
    pub push_wake_before_expiry: Option<f64>,
    /// The option of that name.
    pub push_retry_delays: Option<Vec<f64>>,
    /// The option of that name.
    pub push_max_retries: Option<f64>,
    /// The option of that name.
    pub push_grace_period: Option<f64>,
    /// The option of that name.
    pub push_counts_write_interval: Option<f64>,
    /// The option of that name (XEP-0492's defaults where the user's
    /// bookmark says nothing).
    pub push_chat_settings_defaults: Option<bool>,
    /// The option of that name (Push 2.0 served beside XEP-0357).
    pub push2: Option<bool>,
    /// The option of that name (`mod_push2`'s: the VAPID `sub` claim).
    pub contact_uri: Option<String>,
    /// The option of that name.
    pub push2_forward_content: Option<bool>,
    /// mod_muc_cloud_notify only: `"mentions"` or `"all"`.
    pub muc_push_policy: Option<String>,
    /// Set by mod_muc_cloud_notify itself (not an option): unanswered
    /// pushes count against a registration there.
    pub muc_module: Option<bool>,
    /// mod_muc_cloud_notify only: bounds on remote users ([`crate::quota`]).
    pub muc_push_local_only: Option<bool>,
    /// mod_muc_cloud_notify only: the option of that name.
    pub muc_push_max_users_per_domain: Option<f64>,
    /// mod_muc_cloud_notify only: the option of that name.
    pub muc_push_max_remote_users: Option<f64>,
    /// mod_muc_cloud_notify only: the option of that name.
    pub muc_push_enables_per_minute: Option<f64>,
}

/// Validated options.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Send the real message body to the app server.
    pub with_body: bool,
    /// Send the real sender to the app server.
    pub with_sender: bool,
    /// Body sent for important stanzas when the real one is not; empty: none.
    pub important_body: String,
    /// Send true unread counts (`message-count`), pushes for chats read
    /// elsewhere and `pending-subscription-count`; off: `message-count` is
    /// always 1, as the reference sends it, and none of the rest.
    pub with_counts: bool,
    /// Registrations per user; the oldest are dropped beyond it.
    pub max_devices: usize,
    /// App-server errors (not of type `wait`) before a registration is removed.
    pub max_errors: u32,
    /// Seconds a hibernated push session is kept before its first important push.
    pub max_hibernation_timeout: u64,
    /// Users whose registrations are kept in memory.
    pub cache_size: usize,
    /// Seconds to wait for an app server's answer to a push.
    pub response_timeout: u64,
    /// Pushes awaiting an answer, per host, at most.
    pub max_pending: usize,
    /// Seconds before a hibernated push session expires that it gets one
    /// last (unimportant) push; 0: none.
    pub wake_before_expiry: u64,
    /// Seconds before each retry of a push answered with a `wait` error.
    pub retry_delays: Vec<f64>,
    /// Retries waiting, per host, at most.
    pub max_retries: usize,
    /// Seconds after a session of the user was active during which other
    /// registrations get no push (calls excepted); 0: off.
    pub grace_period: u64,
    /// Seconds between writes of the unread counts that changed.
    pub counts_write_interval: u64,
    /// What a MUC pushes (mod_muc_cloud_notify).
    pub muc_policy: crate::muc::Policy,
    /// What remote users may register with a MUC (mod_muc_cloud_notify).
    pub muc_limits: crate::quota::Limits,
    /// This is mod_muc_cloud_notify: a push nobody answered counts as an
    /// error, so registrations whose app server never answers age out
    /// (anyone on the network may register there). The main module never
    /// counts them: an outage deletes nothing.
    pub unanswered_count: bool,
    /// `push_chat_settings_defaults`: where a user's bookmark for a room
    /// says nothing, XEP-0492's defaults apply (on-mention in a public
    /// room, always in another); off, such a room is pushed as without
    /// XEP-0492.
    pub chat_settings_defaults: bool,
    /// `push2`: Push 2.0 (`urn:xmpp:push2:0`) is served (never on the MUC
    /// module).
    pub push2: bool,
    /// `contact_uri`: the VAPID `sub` claim of Push 2.0 pushes; `None`:
    /// `https://` and the host (Apple's Web Push refuses `xmpp:` URIs).
    pub contact_uri: Option<String>,
    /// `push2_forward_content`: an encrypted Push 2.0 push forwards the
    /// message (encrypted to the device's own key); off, only its archive
    /// id, type and call signal, no body and no sender.
    pub push2_forward_content: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            with_body: false,
            with_sender: false,
            important_body: DEFAULT_IMPORTANT_BODY.to_owned(),
            with_counts: true,
            max_devices: DEFAULT_MAX_DEVICES,
            max_errors: DEFAULT_MAX_ERRORS,
            max_hibernation_timeout: DEFAULT_MAX_HIBERNATION_TIMEOUT,
            cache_size: DEFAULT_CACHE_SIZE,
            response_timeout: DEFAULT_PUSH_TIMEOUT,
            max_pending: DEFAULT_MAX_PENDING,
            wake_before_expiry: DEFAULT_WAKE_BEFORE_EXPIRY,
            retry_delays: DEFAULT_RETRY_DELAYS.to_vec(),
            max_retries: DEFAULT_MAX_RETRIES,
            grace_period: 0,
            counts_write_interval: 300,
            muc_policy: crate::muc::Policy::default(),
            unanswered_count: false,
            chat_settings_defaults: false,
            push2: true,
            contact_uri: None,
            push2_forward_content: true,
            muc_limits: crate::quota::Limits::default(),
        }
    }
}

/// `contact_uri`: a `mailto:` or `https:` URI of at most 1 KiB is taken
/// as it is; an `xmpp:` one is taken with a warning (Apple's Web Push
/// refuses it); anything else is not.
fn contact_uri(value: Option<&str>, problems: &mut Vec<String>) -> Option<String> {
    let uri = value?;
    let scheme_ok = ["mailto:", "https:", "xmpp:"]
        .iter()
        .any(|s| uri.starts_with(s));
    if !scheme_ok || uri.len() > 1024 || uri.chars().any(char::is_control) {
        problems.push(format!(
            "option 'contact_uri' is {uri:?}, expected a mailto: or https: URI; using https:// and the host"
        ));
        return None;
    }
    if uri.starts_with("xmpp:") {
        problems.push(format!(
            "option 'contact_uri' is {uri:?}: Apple's Web Push refuses Push 2.0 pushes whose VAPID subject is an xmpp: URI; prefer mailto: or https:"
        ));
    }
    Some(uri.to_owned())
}

/// The options' checks, and a message per value rejected.
#[derive(Default)]
struct Checks {
    problems: Vec<String>,
}

impl Checks {
    /// An integral option within `min..=max`, or the default with a complaint.
    fn ranged(
        &mut self,
        name: &str,
        value: Option<f64>,
        (min, max): (u64, u64),
        default: u64,
    ) -> u64 {
        match value {
            None => default,
            Some(v) if v.fract() == 0.0 && v >= min as f64 && v <= max as f64 => v as u64,
            Some(v) => {
                self.problems.push(format!(
                    "option '{name}' is {v}, expected a whole number from {min} to {max}; using the default {default}"
                ));
                default
            }
        }
    }

    /// `push_retry_delays`: at most 10 delays of 0 to 86400 seconds.
    fn retry_delays(&mut self, value: Option<&Vec<f64>>, default: &[f64]) -> Vec<f64> {
        match value {
            None => default.to_vec(),
            Some(delays)
                if delays.len() <= 10 && delays.iter().all(|&s| s > 0.0 && s <= 86_400.0) =>
            {
                delays.clone()
            }
            Some(delays) => {
                self.problems.push(format!(
                    "option 'push_retry_delays' is {delays:?}, expected at most 10 delays of 0 to 86400 seconds; using the default {default:?}"
                ));
                default.to_vec()
            }
        }
    }

    /// `muc_push_policy`: "mentions" or "all".
    fn muc_policy(
        &mut self,
        value: Option<&str>,
        default: crate::muc::Policy,
    ) -> crate::muc::Policy {
        let Some(p) = value else {
            return default;
        };
        crate::muc::Policy::parse(p).unwrap_or_else(|| {
            self.problems.push(format!(
                "option 'muc_push_policy' is {p:?}, expected \"mentions\" or \"all\"; using the default \"mentions\""
            ));
            default
        })
    }

    /// The MUC module's bounds on remote users' registrations.
    fn muc_limits(&mut self, raw: &RawConfig, d: crate::quota::Limits) -> crate::quota::Limits {
        crate::quota::Limits {
            local_only: raw.muc_push_local_only.unwrap_or(d.local_only),
            per_domain: self.ranged(
                "muc_push_max_users_per_domain",
                raw.muc_push_max_users_per_domain,
                (0, 10_000_000),
                d.per_domain as u64,
            ) as usize,
            remote_total: self.ranged(
                "muc_push_max_remote_users",
                raw.muc_push_max_remote_users,
                (0, 100_000_000),
                d.remote_total as u64,
            ) as usize,
            enables_per_minute: self.ranged(
                "muc_push_enables_per_minute",
                raw.muc_push_enables_per_minute,
                (1, 1_000_000),
                u64::from(d.enables_per_minute),
            ) as u32,
        }
    }
}

/// A year, in seconds: the longest hibernation and wake-up option.
const YEAR: u64 = 365 * 24 * 3600;

impl Checks {
    /// The numeric options of the main module (the rest as in `d`).
    fn numbers(&mut self, raw: &RawConfig, d: &Config) -> Config {
        let c = self;
        Config {
            max_devices: c.ranged(
                "push_max_devices",
                raw.push_max_devices,
                (1, 1000),
                d.max_devices as u64,
            ) as usize,
            max_errors: c.ranged(
                "push_max_errors",
                raw.push_max_errors,
                (1, 1_000_000),
                d.max_errors.into(),
            ) as u32,
            max_hibernation_timeout: c.ranged(
                "push_max_hibernation_timeout",
                raw.push_max_hibernation_timeout,
                (0, YEAR),
                d.max_hibernation_timeout,
            ),
            cache_size: c.ranged(
                "push_registration_cache_size",
                raw.push_registration_cache_size,
                (1, 100_000_000),
                d.cache_size as u64,
            ) as usize,
            response_timeout: c.ranged(
                "push_response_timeout",
                raw.push_response_timeout,
                (1, 86_400),
                d.response_timeout,
            ),
            max_pending: c.ranged(
                "push_max_pending",
                raw.push_max_pending,
                (1, 10_000_000),
                d.max_pending as u64,
            ) as usize,
            wake_before_expiry: c.ranged(
                "push_wake_before_expiry",
                raw.push_wake_before_expiry,
                (0, YEAR),
                d.wake_before_expiry,
            ),
            retry_delays: c.retry_delays(raw.push_retry_delays.as_ref(), &d.retry_delays),
            counts_write_interval: c.ranged(
                "push_counts_write_interval",
                raw.push_counts_write_interval,
                (1, 86_400),
                d.counts_write_interval,
            ),
            grace_period: c.ranged(
                "push_grace_period",
                raw.push_grace_period,
                (0, MAX_GRACE_PERIOD),
                d.grace_period,
            ),
            max_retries: c.ranged(
                "push_max_retries",
                raw.push_max_retries,
                (0, 10_000_000),
                d.max_retries as u64,
            ) as usize,
            ..d.clone()
        }
    }
}

impl Config {
    /// Validates raw options; returns the config and a message per rejected value.
    pub fn from_raw(raw: &RawConfig) -> (Config, Vec<String>) {
        let d = Config::default();
        let mut c = Checks::default();
        let numbers = c.numbers(raw, &d);
        let config = Config {
            with_body: raw.push_notification_with_body.unwrap_or(d.with_body),
            with_sender: raw.push_notification_with_sender.unwrap_or(d.with_sender),
            important_body: raw
                .push_notification_important_body
                .clone()
                .unwrap_or_else(|| d.important_body.clone()),
            with_counts: raw.push_notification_with_counts.unwrap_or(d.with_counts),
            unanswered_count: raw.muc_module.unwrap_or(d.unanswered_count),
            push2: raw.push2.unwrap_or(d.push2) && raw.muc_module != Some(true),
            contact_uri: contact_uri(raw.contact_uri.as_deref(), &mut c.problems),
            push2_forward_content: raw.push2_forward_content.unwrap_or(d.push2_forward_content),
            chat_settings_defaults: raw
                .push_chat_settings_defaults
                .unwrap_or(d.chat_settings_defaults),
            muc_policy: c.muc_policy(raw.muc_push_policy.as_deref(), d.muc_policy),
            muc_limits: c.muc_limits(raw, d.muc_limits),
            ..numbers
        };
        (config, c.problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_reference() {
        let (c, problems) = Config::from_raw(&RawConfig::default());
        assert!(problems.is_empty());
        assert!(!c.with_body);
        assert!(!c.with_sender);
        assert_eq!(c.important_body, "New Message!");
        assert_eq!(c.max_devices, 5);
        assert_eq!(c.max_errors, 16);
        assert_eq!(c.max_hibernation_timeout, 259_200);
    }

    #[test]
    fn out_of_range_falls_back_with_a_message() {
        let raw = RawConfig {
            push_max_devices: Some(0.0),
            push_max_errors: Some(2.5),
            push_max_hibernation_timeout: Some(60.0),
            muc_push_policy: Some("everything".into()),
            ..Default::default()
        };
        let (c, problems) = Config::from_raw(&raw);
        assert_eq!(c.muc_policy, crate::muc::Policy::Mentions);
        assert_eq!(c.max_devices, 5);
        assert_eq!(c.max_errors, 16);
        assert_eq!(c.max_hibernation_timeout, 60);
        assert_eq!(problems.len(), 3);
        assert!(problems[0].contains("push_max_devices"));
    }

    #[test]
    fn empty_important_body_is_kept() {
        let raw = RawConfig {
            push_notification_important_body: Some(String::new()),
            ..Default::default()
        };
        assert_eq!(Config::from_raw(&raw).0.important_body, "");
    }
}
