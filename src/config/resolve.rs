//! Resolving the merged file and command line into a [`Config`]: defaults
//! filled in, every value checked, errors naming the option; and the
//! reverse, for `check-config`.

use super::*;

fn one_char(option: &str, value: &str) -> Result<char, ConfigError> {
    let mut chars = value.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) => Ok(c),
        _ => Err(ConfigError(format!(
            "{option} takes exactly one character, not {value:?}"
        ))),
    }
}

fn millis(option: &str, v: f64) -> Result<Duration, ConfigError> {
    if v.is_finite() && v >= 0.0 {
        Ok(Duration::from_secs_f64(v / 1000.0))
    } else {
        Err(ConfigError(format!(
            "{option} must be a number of milliseconds, not {v}"
        )))
    }
}

/// The batch window in effect: (quiet, cap) in milliseconds, defaults
/// filled in (0.5 and 2).
pub fn batch_window(w: &file::WatchConfig) -> (f64, f64) {
    (
        w.batch_quiet_ms.unwrap_or(0.5),
        w.batch_max_ms.unwrap_or(2.0),
    )
}

/// Resolves the merged file and command line into a `Config`: defaults
/// filled in, every value checked, errors naming the option.
pub fn resolve(
    fc: &FileConfig,
    env: &dyn Fn(&str) -> Option<String>,
    fqdn: &dyn Fn() -> String,
) -> Result<Config, ConfigError> {
    let state_dir = match &fc.state_dir {
        Some(d) => d.clone(),
        None => default_state_dir(env).ok_or_else(|| {
            ConfigError(
                "no state_dir (--state) given and neither $STATE_DIRECTORY nor $HOME is set".into(),
            )
        })?,
    };
    if fc.store.is_empty() {
        return Err(ConfigError(
            "nothing to scan: give MAILDIR paths or --store TEMPLATE (or [[store]] in the config file)".into(),
        ));
    }
    let shard = fc
        .shard
        .as_deref()
        .map(shard::Shard::parse)
        .transpose()
        .map_err(ConfigError)?;
    let mut sources = Vec::new();
    for (i, st) in fc.store.iter().enumerate() {
        let kind = match (&st.template, &st.path) {
            (Some(t), None) => {
                if st.user.is_some() {
                    return Err(ConfigError(format!(
                        "store {}: user goes with path, not template",
                        i + 1
                    )));
                }
                SourceKind::Template(Template::parse(t)?)
            }
            (None, Some(p)) => {
                let path = std::path::absolute(p)
                    .map_err(|e| ConfigError(format!("{}: {e}", p.display())))?;
                let user = match &st.user {
                    Some(u) => u.clone(),
                    None => user_from_path(&path).ok_or_else(|| {
                        ConfigError(format!(
                            "cannot tell the user of {}; pass --user",
                            path.display()
                        ))
                    })?,
                };
                SourceKind::Maildir { path, user }
            }
            _ => {
                return Err(ConfigError(format!(
                    "store {}: give exactly one of template and path",
                    i + 1
                )));
            }
        };
        sources.push(Source {
            kind,
            tags: st.tags.clone(),
            shard,
        });
    }
    let hier_sep = one_char(
        "--separator (separator)",
        fc.separator.as_deref().unwrap_or("."),
    )?;
    let namespace_prefix = match fc.namespace_prefix.as_deref() {
        None => None,
        Some("") => Some(String::new()),
        Some(p)
            if p.ends_with(hier_sep)
                && p.len() > hier_sep.len_utf8()
                && !p.contains(['\n', '\r']) =>
        {
            Some(p.to_string())
        }
        Some(p) => {
            return Err(ConfigError(format!(
                "--namespace-prefix (namespace_prefix) {p:?} must end with the separator {hier_sep:?} (e.g. \"INBOX{hier_sep}\"), or be \"\" for none"
            )));
        }
    };
    let info = one_char(
        "--info-separator (info_separator)",
        fc.info_separator.as_deref().unwrap_or(":"),
    )?;
    if !info.is_ascii() || info == '/' || info == '.' || info == ',' {
        return Err(ConfigError(format!(
            "--info-separator (info_separator) {info:?} cannot separate a Maildir name"
        )));
    }

    let filter = match &fc.filter {
        None => Filter::default(),
        Some(f) => {
            let groups = match &f.groups {
                None => Group::ALL.to_vec(),
                Some(names) => names
                    .iter()
                    .map(|n| {
                        Group::parse(n).ok_or_else(|| {
                            ConfigError(format!(
                                "filter.groups: unknown group {n:?} (message, flags, quota, mailbox, subscription, access)"
                            ))
                        })
                    })
                    .collect::<Result<_, _>>()?,
            };
            Filter::new(groups, f.exclude_folders.clone(), f.exclude_flags.clone())
        }
    };

    let content = {
        let c = fc.content.clone().unwrap_or_default();
        let mode = c.mode.unwrap_or_else(|| "standard".into());
        if !CONTENT_MODES.contains(&mode.as_str()) {
            return Err(ConfigError(format!(
                "content.mode: unknown mode {mode:?} (standard, message, header, body, headerbody)"
            )));
        }
        for p in &c.include {
            if !CONTENT_PARAMETERS.contains(&p.as_str()) {
                return Err(ConfigError(format!(
                    "content.include: unknown parameter {p:?} ({})",
                    CONTENT_PARAMETERS.join(", ")
                )));
            }
        }
        ContentSettings {
            mode,
            max_size: c.max_size.unwrap_or(64 * 1024),
            max_read: match c.max_read {
                Some(0) => {
                    return Err(ConfigError(
                        "content.max_read: must be more than 0 bytes".into(),
                    ));
                }
                Some(n) => n,
                None => crate::enrich::DEFAULT_MAX_READ,
            },
            include: c.include,
        }
    };

    let quota = match &fc.quota {
        None => None,
        Some(q) => {
            let size = |what: &str, s: &Option<String>| -> Result<Option<u64>, ConfigError> {
                s.as_deref()
                    .map(parse_size)
                    .transpose()
                    .map_err(|e| ConfigError(format!("{what}: {e}")))
            };
            let mut per_user = HashMap::new();
            for u in &q.user {
                let limits = Limits {
                    bytes: size(&format!("quota.user {}: storage", u.user), &u.storage)?,
                    messages: u.messages,
                };
                per_user.insert(u.user.clone(), (limits, u.force));
            }
            let hysteresis = q.hysteresis_percent.unwrap_or(1.0);
            if !(0.0..100.0).contains(&hysteresis) {
                return Err(ConfigError(format!(
                    "quota.hysteresis_percent must be 0 to 100, not {hysteresis}"
                )));
            }
            let full_at = q.full_at_percent.unwrap_or(100.0);
            if !(full_at > 0.0 && full_at <= 100.0) {
                return Err(ConfigError(format!(
                    "quota.full_at_percent must be more than 0 and at most 100, not {full_at}"
                )));
            }
            Some(QuotaRules {
                full_at: full_at / 100.0,
                default: Limits {
                    bytes: size("quota.storage", &q.storage)?,
                    messages: q.messages,
                },
                force: q.force.unwrap_or(false),
                per_user,
                ignore: q.ignore.clone(),
                hysteresis: hysteresis / 100.0,
            })
        }
    };

    let expire = fc
        .expire
        .iter()
        .map(|r| {
            Ok(ExpireRule {
                folder: r.folder.clone(),
                min_age: parse_age(&r.min_age)
                    .map_err(|e| ConfigError(format!("expire {}: min_age {e}", r.folder)))?,
            })
        })
        .collect::<Result<_, ConfigError>>()?;

    let mut access_logs = Vec::new();
    for log in fc.access.iter().flat_map(|a| &a.logs) {
        let log = if log == crate::access::JOURNAL {
            log.clone()
        } else {
            let p = std::path::absolute(log)
                .map_err(|e| ConfigError(format!("--access-log (access.logs) {log:?}: {e}")))?;
            p.to_str()
                .ok_or_else(|| {
                    ConfigError(format!(
                        "--access-log (access.logs) {log:?}: the path must be UTF-8"
                    ))
                })?
                .to_string()
        };
        if !access_logs.contains(&log) {
            access_logs.push(log);
        }
    }

    let w = fc.watch.clone().unwrap_or_default();
    let (quiet_ms, max_ms) = batch_window(&w);
    if max_ms <= 0.0 {
        return Err(ConfigError(format!(
            "watch.batch_max_ms (--batch-max-ms) must be more than 0, not {max_ms}"
        )));
    }
    if quiet_ms > max_ms {
        return Err(ConfigError(format!(
            "watch.batch_quiet_ms (--batch-quiet-ms) {quiet_ms} is longer than \
             watch.batch_max_ms (--batch-max-ms) {max_ms}: every batch would close at the \
             cap; make the quiet window shorter or the cap longer"
        )));
    }
    let watch = WatchOptions {
        batch_quiet: millis("batch_quiet_ms", quiet_ms)?,
        batch_max: millis("batch_max_ms", max_ms)?,
        rescan_interval: match w.rescan_interval.unwrap_or(3600) {
            0 => None,
            s => Some(Duration::from_secs(s)),
        },
        poll: match w.poll {
            Some(p) if p.is_finite() && p > 0.0 => Some(Duration::from_secs_f64(p)),
            Some(p) => {
                return Err(ConfigError(format!(
                    "poll must be a positive number of seconds, not {p}"
                )));
            }
            None => None,
        },
        full_every: w.full_every.unwrap_or(60),
        poll_unwatched: match w.poll_unwatched.unwrap_or(5.0) {
            p if p.is_finite() && p > 0.0 => Duration::from_secs_f64(p),
            p => {
                return Err(ConfigError(format!(
                    "poll_unwatched must be a positive number of seconds, not {p}"
                )));
            }
        },
    };

    Ok(Config {
        state_dir,
        sources,
        server_name: fc.server_name.clone().unwrap_or_else(fqdn),
        scan: ScanOptions {
            info_sep: info as u8,
            hier_sep,
            namespace_prefix,
            utf8_names: fc.utf8_names.unwrap_or(false),
            full: fc.full.unwrap_or(false),
            stat_sizes: quota.is_some(),
            settle: Some(Duration::from_secs(1)),
        },
        uid_wait: Duration::from_millis(fc.uid_wait_ms.unwrap_or(2000)),
        emit_existing: fc.emit_existing.unwrap_or(false),
        allow_missing: fc.allow_missing.unwrap_or(false),
        simple_flag_events: fc.simple_flag_events.unwrap_or(true),
        filter,
        content,
        quota,
        access_logs,
        expire,
        watch,
        sinks: fc.sink.clone(),
        outbox_limit: fc.outbox_limit.unwrap_or(1_000_000).max(1),
        metrics_listen: fc
            .metrics
            .as_ref()
            .map(|m| m.listen.clone().unwrap_or_else(|| "127.0.0.1:9898".into())),
    })
}

/// The resolved configuration as TOML, every default spelled out (for
/// `check-config`).
pub fn describe(config: &Config, merged: &FileConfig) -> String {
    let mut fc = merged.clone();
    fc.state_dir = Some(config.state_dir.clone());
    fc.server_name = Some(config.server_name.clone());
    fc.separator = Some(config.scan.hier_sep.to_string());
    fc.namespace_prefix = config.scan.namespace_prefix.clone();
    fc.info_separator = Some((config.scan.info_sep as char).to_string());
    fc.utf8_names = Some(config.scan.utf8_names);
    fc.uid_wait_ms = Some(config.uid_wait.as_millis() as u64);
    fc.emit_existing = Some(config.emit_existing);
    fc.shard = config
        .sources
        .iter()
        .find_map(|s| s.shard)
        .map(|s| s.to_string());
    fc.simple_flag_events = Some(config.simple_flag_events);
    fc.full = Some(config.scan.full);
    fc.allow_missing = Some(config.allow_missing);
    fc.store = config
        .sources
        .iter()
        .map(|s| match &s.kind {
            SourceKind::Maildir { path, user } => file::StoreConfig {
                path: Some(path.clone()),
                user: Some(user.clone()),
                tags: s.tags.clone(),
                ..Default::default()
            },
            SourceKind::Template(t) => file::StoreConfig {
                template: Some(t.raw.clone()),
                tags: s.tags.clone(),
                ..Default::default()
            },
        })
        .collect();
    let w = &config.watch;
    fc.watch = Some(file::WatchConfig {
        batch_quiet_ms: Some(w.batch_quiet.as_secs_f64() * 1000.0),
        batch_max_ms: Some(w.batch_max.as_secs_f64() * 1000.0),
        rescan_interval: Some(w.rescan_interval.map_or(0, |d| d.as_secs())),
        poll: w.poll.map(|d| d.as_secs_f64()),
        full_every: Some(w.full_every),
        poll_unwatched: Some(w.poll_unwatched.as_secs_f64()),
    });
    fc.content = Some(file::ContentConfig {
        mode: Some(config.content.mode.clone()),
        max_size: Some(config.content.max_size),
        max_read: Some(config.content.max_read),
        include: config.content.include.clone(),
    });
    fc.outbox_limit = Some(config.outbox_limit);
    let filter = fc.filter.get_or_insert_with(Default::default);
    filter
        .groups
        .get_or_insert_with(|| Group::ALL.iter().map(|g| g.name().to_string()).collect());
    if let Some(q) = &mut fc.quota {
        q.force.get_or_insert(false);
        q.hysteresis_percent.get_or_insert(1.0);
        q.full_at_percent.get_or_insert(100.0);
    }
    let sinks: Vec<crate::sink::SinkConfig> = if config.sinks.is_empty() {
        vec![crate::sink::SinkConfig::Stdout]
    } else {
        config.sinks.clone()
    };
    let names: Vec<String> = sinks.iter().map(|s| s.name()).collect();
    format!(
        "# maildir-events: resolved configuration\n# sinks: {}\n{}\n{}",
        names.join(", "),
        fc.to_toml(),
        describe_sinks(&sinks)
    )
}

/// The sinks as `[[sink]]` tables, every default spelled out and every
/// secret left out: URLs without userinfo and query, header values
/// replaced (the HMAC secret stays in its file; only the path is shown).
fn describe_sinks(sinks: &[crate::sink::SinkConfig]) -> String {
    #[derive(serde::Serialize)]
    struct Sinks {
        sink: Vec<toml::Value>,
    }
    let sink = sinks
        .iter()
        .filter_map(|s| toml::Value::try_from(s).ok())
        .map(|mut v| {
            if let Some(t) = v.as_table_mut() {
                if let Some(toml::Value::String(url)) = t.get_mut("url") {
                    *url = crate::sink::redact::url(url);
                }
                if let Some(toml::Value::Table(headers)) = t.get_mut("headers") {
                    for (_, value) in headers.iter_mut() {
                        *value = toml::Value::String("[redacted]".into());
                    }
                }
            }
            v
        })
        .collect();
    toml::to_string_pretty(&Sinks { sink }).unwrap_or_else(|e| format!("# cannot show: {e}\n"))
}
