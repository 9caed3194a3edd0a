//! The man pages against the code they document: every command and long flag of the CLI (clap's
//! own command tree) in `man/natter.1`, every configuration field at its default in
//! `man/natter.toml.5`. A command, flag or field added without its documentation fails here.
//!
//! The conventions the checks read (kept to the pages' existing troff style):
//! - natter(1): each command has a SYNOPSIS entry, a line `.B natter <command words>` (alternatives
//!   as `disable\fR|\fBenable`), followed by its flags as `\-\-flag` up to the next `.br` / `.PP`.
//!   The entry `.B natter` alone holds the global flags, which also get a `.TP` under OPTIONS.
//! - natter.toml(5): each section is `.SS [section]` (`.SS [[auth.external]]` for an issuer
//!   table), each field a `.TP` entry tagged `.B field = DEFAULT` (the default as TOML, strings as
//!   `\(dq...\(dq`) whose text names its variable `NATTER_<SECTION>_<FIELD>`.

use std::collections::BTreeMap;

use clap::CommandFactory as _;
use natter::config::{Config, ExternalIssuerConfig, WebhookEndpointConfig};

const NATTER_1: &str = include_str!("../man/natter.1");
const NATTER_TOML_5: &str = include_str!("../man/natter.toml.5");

/// A troff line as the reader sees it: font changes and `\&` dropped, `\-` as `-`, `\(dq` as `"`.
fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('-') => out.push('-'),
            Some('e') => out.push('\\'),
            Some(' ') => out.push(' '),
            Some('&' | '|' | '^') | None => {}
            // \fB, \fI, \fR, \fP and \f(XX: fonts only.
            Some('f') => {
                if chars.next() == Some('(') {
                    chars.next();
                    chars.next();
                }
            }
            Some('(') => {
                let name: String = chars.by_ref().take(2).collect();
                match name.as_str() {
                    "dq" => out.push('"'),
                    "aq" => out.push('\''),
                    other => {
                        out.push_str("\\(");
                        out.push_str(other);
                    }
                }
            }
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
        }
    }
    out
}

/// The lines of one `.SH` section of a page (normalized), e.g. "SYNOPSIS".
fn section_lines(page: &str, name: &str) -> Vec<String> {
    let mut inside = false;
    let mut lines = Vec::new();
    for line in page.lines().map(plain) {
        if let Some(title) = line.strip_prefix(".SH ") {
            inside = title.trim().trim_matches('"') == name;
            continue;
        }
        if inside {
            lines.push(line);
        }
    }
    lines
}

/// Is `--flag` in `text` as a whole flag (not the prefix of a longer one)?
fn mentions_flag(text: &str, flag: &str) -> bool {
    let needle = format!("--{flag}");
    text.match_indices(&needle).any(|(at, _)| {
        text[at + needle.len()..]
            .chars()
            .next()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
    })
}

/// Every `--flag` written in `text`.
fn flags_in(text: &str) -> Vec<String> {
    text.match_indices("--")
        .filter(|(at, _)| {
            text[..*at]
                .chars()
                .next_back()
                .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '-'))
        })
        .map(|(at, _)| {
            text[at + 2..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect::<String>()
        })
        .filter(|flag| !flag.is_empty())
        .collect()
}

/// natter(1)'s SYNOPSIS entries: command path ("" for `natter` alone, "user add", ...) -> the text
/// of its entry. `a|b|c` in a `.B natter` line names one entry per alternative.
fn synopsis_entries() -> BTreeMap<String, String> {
    let mut entries: BTreeMap<String, String> = BTreeMap::new();
    let mut current: Vec<String> = Vec::new();
    for line in section_lines(NATTER_1, "SYNOPSIS") {
        let starts_entry = line
            .strip_prefix(".B natter")
            .filter(|rest| rest.is_empty() || rest.starts_with(' '));
        if let Some(rest) = starts_entry {
            let mut words = rest.split_whitespace().peekable();
            let mut paths = vec![String::new()];
            while let Some(word) = words.next_if(|w| !w.starts_with(['-', '[', '<'])) {
                paths = paths
                    .iter()
                    .flat_map(|path| {
                        word.split('|')
                            .map(move |alt| format!("{path} {alt}").trim().to_owned())
                    })
                    .collect();
            }
            let rest: Vec<&str> = words.collect();
            for path in &paths {
                entries
                    .entry(path.clone())
                    .or_default()
                    .push_str(&rest.join(" "));
            }
            current = paths;
        } else if [".br", ".PP", ".LP", ".P", ".SS"]
            .iter()
            .any(|m| line == *m || line.starts_with(&format!("{m} ")))
        {
            current.clear();
        } else {
            for path in &current {
                let text = entries.entry(path.clone()).or_default();
                text.push(' ');
                text.push_str(&line);
            }
        }
    }
    entries
}

/// One command of clap's tree: its path, whether it has subcommands, and its visible long flags.
struct CliCommand {
    path: String,
    is_group: bool,
    flags: Vec<String>,
}

fn cli_commands() -> Vec<CliCommand> {
    fn walk(command: &clap::Command, path: &str, out: &mut Vec<CliCommand>) {
        out.push(CliCommand {
            path: path.to_owned(),
            is_group: command.has_subcommands(),
            flags: command
                .get_arguments()
                .filter(|arg| !arg.is_hide_set())
                .filter_map(|arg| arg.get_long())
                .filter(|long| !matches!(*long, "help" | "version"))
                .map(str::to_owned)
                .collect(),
        });
        for sub in command.get_subcommands() {
            if sub.is_hide_set() || sub.get_name() == "help" {
                continue;
            }
            let sub_path = format!("{path} {}", sub.get_name()).trim().to_owned();
            walk(sub, &sub_path, out);
        }
    }
    let mut out = Vec::new();
    walk(&natter::cli::Cli::command(), "", &mut out);
    out
}

fn display(path: &str) -> String {
    format!("natter {path}").trim().to_owned()
}

/// Problems with natter(1) against clap's tree, both ways; empty when it documents exactly the CLI.
fn natter_1_problems() -> Vec<String> {
    let entries = synopsis_entries();
    let commands = cli_commands();
    let options: String = section_lines(NATTER_1, "OPTIONS").join("\n");
    let mut problems = Vec::new();

    for command in &commands {
        let flags_text: Option<String> = if command.path.is_empty() {
            // The root's flags are global: they belong in the `.B natter` entry (and OPTIONS).
            entries.get("").cloned()
        } else if command.is_group {
            // A group (`natter user`) runs nothing itself: its own flags, if it ever has any,
            // belong in the entries of its subcommands.
            let prefix = format!("{} ", command.path);
            let texts: Vec<&str> = entries
                .iter()
                .filter(|(path, _)| path.starts_with(&prefix))
                .map(|(_, text)| text.as_str())
                .collect();
            (!texts.is_empty()).then(|| texts.join(" "))
        } else {
            entries.get(&command.path).cloned()
        };
        let Some(flags_text) = flags_text else {
            problems.push(format!(
                "`{}` has no SYNOPSIS entry: add a line `.B {}` to man/natter.1",
                display(&command.path),
                display(&command.path).replace('-', "\\-")
            ));
            continue;
        };
        for flag in &command.flags {
            if !mentions_flag(&flags_text, flag) {
                problems.push(format!(
                    "`{} --{flag}` is not in its SYNOPSIS entry in man/natter.1 (write it as \\-\\-{})",
                    display(&command.path),
                    flag.replace('-', "\\-")
                ));
            }
            if command.path.is_empty() && !mentions_flag(&options, flag) {
                problems.push(format!(
                    "global flag --{flag} has no `.TP` entry under OPTIONS in man/natter.1"
                ));
            }
        }
    }

    // And back: nothing documented that the CLI does not have.
    for (path, text) in &entries {
        let Some(command) = commands.iter().find(|c| &c.path == path) else {
            problems.push(format!(
                "man/natter.1 documents `{}`, which the CLI does not have",
                display(path)
            ));
            continue;
        };
        let ancestors: Vec<&CliCommand> = commands
            .iter()
            .filter(|c| {
                c.path.is_empty() || *path == c.path || path.starts_with(&format!("{} ", c.path))
            })
            .collect();
        for flag in flags_in(text) {
            if !ancestors.iter().any(|c| c.flags.contains(&flag)) {
                problems.push(format!(
                    "man/natter.1 documents `{} --{flag}`, which the CLI does not have",
                    display(&command.path)
                ));
            }
        }
    }
    problems
}

#[test]
fn natter_1_documents_every_command_and_flag() {
    let problems = natter_1_problems();
    assert!(
        problems.is_empty(),
        "man/natter.1 and the CLI disagree:\n  {}",
        problems.join("\n  ")
    );
}

/// The reader must see what the check sees: the entries exist, alternatives expand, flags are
/// found whole (a check that found nothing would pass vacuously).
#[test]
fn natter_1_reader_sees_the_synopsis() {
    let entries = synopsis_entries();
    for path in [
        "",
        "serve",
        "check-config",
        "user add",
        "user disable",
        "user remove",
    ] {
        assert!(
            entries.contains_key(path),
            "no entry {path:?} in {entries:?}"
        );
    }
    assert!(mentions_flag(&entries["user add"], "password-stdin"));
    assert!(mentions_flag(&entries[""], "data-dir"));
    assert!(!mentions_flag(&entries["user add"], "password"));
    assert!(!mentions_flag(&entries["user list"], "role"));
    let commands = cli_commands();
    assert!(commands.iter().any(|c| c.path == "user set-role"));
    assert!(
        commands
            .iter()
            .any(|c| c.path.is_empty() && c.flags.contains(&"config".to_owned()))
    );
}

/// natter.toml(5)'s field entries: section title ("[server]", "[[auth.external]]") -> tag
/// ("listen = \"127.0.0.1:8000\"") -> the entry's text.
fn config_entries() -> BTreeMap<String, BTreeMap<String, String>> {
    let mut sections: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut section: Option<String> = None;
    let mut tag: Option<String> = None;
    let mut expect_tag = false;
    for line in NATTER_TOML_5.lines().map(plain) {
        if let Some(title) = line.strip_prefix(".SS ") {
            section = Some(title.trim().trim_matches('"').to_owned());
            tag = None;
        } else if line.starts_with(".SH") {
            section = None;
            tag = None;
        } else if line == ".PP" {
            tag = None;
        } else if line == ".TP" {
            expect_tag = true;
            tag = None;
            continue;
        } else if expect_tag {
            if let (Some(section), Some(text)) = (&section, line.strip_prefix(".B ")) {
                let text = text.trim().to_owned();
                sections
                    .entry(section.clone())
                    .or_default()
                    .insert(text.clone(), String::new());
                tag = Some(text);
            }
        } else if let (Some(section), Some(tag)) = (&section, &tag)
            && let Some(text) = sections
                .get_mut(section)
                .and_then(|fields| fields.get_mut(tag))
        {
            text.push_str(&line);
            text.push('\n');
        }
        expect_tag = false;
    }
    sections
}

/// A default as the page writes it: `true`, `64`, `"info"`, `[]`.
fn toml_value(value: &toml::Value) -> String {
    value.to_string()
}

/// Problems with natter.toml(5) against the config's defaults; empty when every field is there.
fn natter_toml_5_problems() -> Vec<String> {
    let entries = config_entries();
    let mut problems = Vec::new();
    let check = |section_title: &str, field: &str, value: &toml::Value, env: Option<String>| {
        let tag = format!("{field} = {}", toml_value(value));
        let Some(fields) = entries.get(section_title) else {
            return Some(format!(
                "section {section_title} is missing: add `.SS {section_title}` to man/natter.toml.5"
            ));
        };
        let Some(text) = fields.get(&tag) else {
            return Some(format!(
                "{section_title} {field}: no `.TP` entry tagged `.B {}` in man/natter.toml.5",
                tag.replace('"', "\\(dq").replace('-', "\\-")
            ));
        };
        match env {
            Some(env) if !text.contains(&env) => Some(format!(
                "{section_title} {field}: its entry does not name its variable {env}"
            )),
            _ => None,
        }
    };

    let defaults = toml::Table::try_from(Config::default()).expect("the config is a table");
    for (section, value) in &defaults {
        let Some(fields) = value.as_table() else {
            problems.push(format!(
                "top-level field {section} has no place in man/natter.toml.5: give it a section"
            ));
            continue;
        };
        for (field, value) in fields {
            let env = format!(
                "NATTER_{}_{}",
                section.to_ascii_uppercase(),
                field.to_ascii_uppercase()
            );
            problems.extend(check(&format!("[{section}]"), field, value, Some(env)));
        }
    }
    // Arrays of tables are empty by default, so their fields come from their own defaults.
    let issuer =
        toml::Table::try_from(ExternalIssuerConfig::default()).expect("an issuer is a table");
    for (field, value) in &issuer {
        problems.extend(check("[[auth.external]]", field, value, None));
    }
    let endpoint = toml::Table::try_from(WebhookEndpointConfig::default())
        .expect("a webhook endpoint is a table");
    for (field, value) in &endpoint {
        problems.extend(check("[[webhooks.endpoints]]", field, value, None));
    }
    problems
}

#[test]
fn natter_toml_5_documents_every_config_field_at_its_default() {
    let problems = natter_toml_5_problems();
    assert!(
        problems.is_empty(),
        "man/natter.toml.5 and the configuration disagree:\n  {}",
        problems.join("\n  ")
    );
}

/// The reader finds the entries it checks, with their text (a vacuous reader would pass anything).
#[test]
fn natter_toml_5_reader_sees_the_entries() {
    let entries = config_entries();
    let server = &entries["[server]"];
    assert!(
        server["listen = \"127.0.0.1:8000\""].contains("NATTER_SERVER_LISTEN"),
        "{server:?}"
    );
    assert!(entries["[store]"].contains_key("data_dir = \"./natter-data\""));
    assert!(entries["[[auth.external]]"].contains_key("algorithm = \"HS256\""));
    assert!(!entries["[server]"].contains_key("max_batch = 1024"));
    assert_eq!(toml_value(&toml::Value::Array(Vec::new())), "[]");
}
