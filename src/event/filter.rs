//! Which events to send, after Cyrus's proven options: event groups on and
//! off, excluded folders and excluded flags (RFC 5423 §3 asks that a
//! deployment can "turn on and off groups of related events").

pub use crate::maildir::glob::glob;

/// A group of related events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Group {
    Message,
    Flags,
    Quota,
    Mailbox,
    Subscription,
    Access,
}

impl Group {
    pub const ALL: [Group; 6] = [
        Group::Message,
        Group::Flags,
        Group::Quota,
        Group::Mailbox,
        Group::Subscription,
        Group::Access,
    ];

    pub fn parse(s: &str) -> Option<Group> {
        Group::ALL.into_iter().find(|g| g.name() == s)
    }

    pub fn name(self) -> &'static str {
        match self {
            Group::Message => "message",
            Group::Flags => "flags",
            Group::Quota => "quota",
            Group::Mailbox => "mailbox",
            Group::Subscription => "subscription",
            Group::Access => "access",
        }
    }

    /// The group of an RFC 5423 event type.
    pub fn of(kind: &str) -> Group {
        match kind {
            "MessageRead" | "MessageTrash" | "FlagsSet" | "FlagsClear" => Group::Flags,
            "QuotaExceed" | "QuotaWithin" | "QuotaChange" => Group::Quota,
            "MailboxCreate" | "MailboxDelete" | "MailboxRename" => Group::Mailbox,
            "MailboxSubscribe" | "MailboxUnSubscribe" => Group::Subscription,
            "Login" | "Logout" => Group::Access,
            _ => Group::Message,
        }
    }
}

/// The filter of one run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    groups: Vec<Group>,
    exclude_folders: Vec<String>,
    exclude_flags: Vec<String>,
}

impl Default for Filter {
    fn default() -> Self {
        Filter {
            groups: Group::ALL.to_vec(),
            exclude_folders: Vec::new(),
            exclude_flags: Vec::new(),
        }
    }
}

impl Filter {
    pub fn new(
        groups: Vec<Group>,
        exclude_folders: Vec<String>,
        exclude_flags: Vec<String>,
    ) -> Filter {
        Filter {
            groups,
            exclude_folders,
            exclude_flags,
        }
    }

    /// Whether events of this type are sent at all.
    pub fn sends(&self, kind: &str) -> bool {
        self.groups.contains(&Group::of(kind))
    }

    /// Whether events about this mailbox are sent.
    pub fn sends_folder(&self, name: &str) -> bool {
        !self.exclude_folders.iter().any(|p| glob(p, name))
    }

    /// Whether changes of this flag (as `flagNames` spells it) are sent.
    /// System flags compare without case, like IMAP.
    pub fn sends_flag(&self, name: &str) -> bool {
        !self
            .exclude_flags
            .iter()
            .any(|f| f.eq_ignore_ascii_case(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_and_exclusions() {
        let f = Filter::new(
            vec![Group::Message, Group::Mailbox],
            vec!["Junk".into()],
            vec!["$Junk".into(), "\\seen".into()],
        );
        assert!(f.sends("MessageNew") && f.sends("MessageExpire") && f.sends("MailboxRename"));
        assert!(!f.sends("FlagsSet") && !f.sends("QuotaExceed") && !f.sends("MailboxSubscribe"));
        assert!(!f.sends_folder("Junk") && f.sends_folder("INBOX"));
        assert!(!f.sends_flag("\\Seen") && !f.sends_flag("$Junk") && f.sends_flag("\\Flagged"));
        assert!(Filter::default().sends("Logout"));
        assert_eq!(Group::parse("quota"), Some(Group::Quota));
        assert_eq!(Group::parse("quotas"), None);
    }
}
