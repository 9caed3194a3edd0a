//! Figures, the median over runs, targets, and the tables and JSON the suite prints and writes:
//! every figure, then the goal table of issue #16 with each goal met or not.

use std::collections::BTreeMap;

use serde::Serialize;

/// One measured figure of one run: natter's value, and the comparison's (uWS, raw sled, or the
/// ideal computed in the run) when there is one.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    pub scenario: &'static str,
    pub name: String,
    pub unit: &'static str,
    pub natter: Option<f64>,
    pub peer: Option<f64>,
    /// What `peer` is: "uWS", "raw sled", "ideal".
    pub peer_name: &'static str,
    pub target: Option<Target>,
    /// The row of issue #16's goal table this figure belongs to (a key of [`GOALS`]).
    pub goal: Option<&'static str>,
}

/// One row of issue #16's goal table ("Close the gaps"): the figures that carry its key are
/// printed under it, each with its target.
#[derive(Debug, Clone, Copy)]
pub struct Goal {
    pub key: &'static str,
    pub figure: &'static str,
    pub goal: &'static str,
}

/// Issue #16's goal table, in its order.
pub const GOALS: &[Goal] = &[
    Goal {
        key: "fanout-saturation",
        figure: "fan-out saturation",
        goal: ">= 1.0 x uWS (the best-run peer), same run",
    },
    Goal {
        key: "fanout-p99-cpu",
        figure: "fan-out p99 at 200 msg/s and server CPU per delivery",
        goal: "<= 1.0 x uWS",
    },
    Goal {
        key: "idle-memory",
        figure: "idle memory per authenticated connection",
        goal: "<= 4 KiB",
    },
    Goal {
        key: "durable-users",
        figure: "durable sends, 64 connections of 13 users, client_msg_id",
        goal: ">= 25,000 acks/s, p99 <= 5 ms, >= 1.0 x the raw sled group commit",
    },
    Goal {
        key: "busy-room",
        figure: "busy room, 64 joined senders",
        goal: ">= 10,000 acked sends/s (~640 k deliveries/s), ack p99 <= 20 ms",
    },
    Goal {
        key: "idle-100k",
        figure: "100,000 idle authenticated connections on this machine",
        goal: "held, RSS <= 600 MiB, each still answered",
    },
    Goal {
        key: "resume-storm",
        figure: "reconnect storm 10,000 with resume",
        goal: "all resumed, none lost or duplicated; report time",
    },
];

/// A target checked against the median (issue #16's goals, or issue #6's where #16 has none).
#[derive(Debug, Clone, Copy, Serialize)]
pub enum Target {
    /// natter / peer at least this.
    RatioAtLeast(f64),
    /// natter / peer at most this.
    RatioAtMost(f64),
    /// natter's value at least this (in the figure's unit).
    AtLeast(f64),
    /// natter's value at most this (in the figure's unit).
    AtMost(f64),
}

impl Target {
    fn describe(self) -> String {
        match self {
            Target::RatioAtLeast(r) => format!("ratio >= {r}"),
            Target::RatioAtMost(r) => format!("ratio <= {r}"),
            Target::AtLeast(v) => format!(">= {}", short(v)),
            Target::AtMost(v) => format!("<= {}", short(v)),
        }
    }

    fn met(self, natter: Option<f64>, ratio: Option<f64>) -> Option<bool> {
        match self {
            Target::RatioAtLeast(r) => ratio.map(|x| x >= r),
            Target::RatioAtMost(r) => ratio.map(|x| x <= r),
            Target::AtLeast(v) => natter.map(|x| x >= v),
            Target::AtMost(v) => natter.map(|x| x <= v),
        }
    }
}

impl Figure {
    pub fn new(scenario: &'static str, name: impl Into<String>, unit: &'static str) -> Figure {
        Figure {
            scenario,
            name: name.into(),
            unit,
            natter: None,
            peer: None,
            peer_name: "uWS",
            target: None,
            goal: None,
        }
    }

    pub fn natter(mut self, value: f64) -> Figure {
        self.natter = Some(value);
        self
    }

    pub fn peer(mut self, name: &'static str, value: Option<f64>) -> Figure {
        self.peer_name = name;
        self.peer = value;
        self
    }

    pub fn target(mut self, target: Target) -> Figure {
        self.target = Some(target);
        self
    }

    /// Puts the figure under a row of issue #16's goal table ([`GOALS`]).
    pub fn goal(mut self, key: &'static str) -> Figure {
        debug_assert!(GOALS.iter().any(|g| g.key == key), "unknown goal {key}");
        self.goal = Some(key);
        self
    }
}

/// A figure's median over the runs, with the ratio and whether its target is met.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub scenario: &'static str,
    pub name: String,
    pub unit: &'static str,
    pub natter: Option<f64>,
    pub peer: Option<f64>,
    pub peer_name: &'static str,
    pub ratio: Option<f64>,
    pub target: Option<String>,
    pub met: Option<bool>,
    /// The row of issue #16's goal table, if any.
    pub goal: Option<&'static str>,
    /// natter's value in each run (the spread behind the median).
    pub natter_runs: Vec<f64>,
    pub peer_runs: Vec<f64>,
}

/// The median of each figure over the runs, in first-seen order.
pub fn medians(runs: &[Vec<Figure>]) -> Vec<Row> {
    let mut order: Vec<(&'static str, String)> = Vec::new();
    let mut grouped: BTreeMap<(&'static str, String), Vec<&Figure>> = BTreeMap::new();
    for figure in runs.iter().flatten() {
        let key = (figure.scenario, figure.name.clone());
        if !grouped.contains_key(&key) {
            order.push(key.clone());
        }
        grouped.entry(key).or_default().push(figure);
    }
    // Rows of one scenario together (a step that only a later run reached comes last).
    let mut scenarios: Vec<&'static str> = Vec::new();
    for (scenario, _) in &order {
        if !scenarios.contains(scenario) {
            scenarios.push(scenario);
        }
    }
    order.sort_by_key(|(scenario, _)| scenarios.iter().position(|s| s == scenario));
    order
        .into_iter()
        .filter_map(|key| {
            let figures = grouped.get(&key)?;
            let first = figures.first()?;
            let natter_runs: Vec<f64> = figures.iter().filter_map(|f| f.natter).collect();
            let peer_runs: Vec<f64> = figures.iter().filter_map(|f| f.peer).collect();
            let natter = median(&natter_runs);
            let peer = median(&peer_runs);
            let ratio = match (natter, peer) {
                (Some(n), Some(p)) if p != 0.0 => Some(n / p),
                _ => None,
            };
            Some(Row {
                scenario: first.scenario,
                name: first.name.clone(),
                unit: first.unit,
                natter,
                peer,
                peer_name: first.peer_name,
                ratio,
                target: first.target.map(Target::describe),
                met: first.target.and_then(|t| t.met(natter, ratio)),
                goal: first.goal,
                natter_runs,
                peer_runs,
            })
        })
        .collect()
}

pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    })
}

/// A number with about four significant digits, without exponent noise.
pub fn short(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude >= 1000.0 || (value.fract() == 0.0 && magnitude < 1e15) {
        format!("{value:.0}")
    } else if magnitude >= 100.0 {
        format!("{value:.1}")
    } else if magnitude >= 1.0 {
        format!("{value:.2}")
    } else if magnitude == 0.0 {
        "0".to_owned()
    } else {
        format!("{value:.3}")
    }
}

fn cell(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), short)
}

fn met_cell(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "yes",
        Some(false) => "NO",
        None => "",
    }
}

/// Issue #16's goal table: under each goal, the figures measured for it with their targets and
/// whether each is met; a goal is met when every target under it is, "not measured" when this
/// run has none of its figures (a scenario not run, or no peer).
pub fn goals_table(rows: &[Row]) -> String {
    let mut lines = vec![
        "| goal (issue #16) | figure | unit | natter | reference | value | ratio | target | met |"
            .to_owned(),
        "|---|---|---|---:|---|---:|---:|---|---|".to_owned(),
    ];
    for goal in GOALS {
        let under: Vec<&Row> = rows.iter().filter(|r| r.goal == Some(goal.key)).collect();
        let targets: Vec<Option<bool>> = under
            .iter()
            .filter(|r| r.target.is_some())
            .map(|r| r.met)
            .collect();
        let overall = if targets.is_empty() {
            "not measured"
        } else if targets.iter().all(|m| *m == Some(true)) {
            "met"
        } else if targets.contains(&Some(false)) {
            "NOT MET"
        } else {
            "not measured (no reference)"
        };
        lines.push(format!(
            "| **{}** | goal: {} | | | | | | | **{overall}** |",
            goal.figure, goal.goal
        ));
        for row in under {
            lines.push(format!(
                "| | {} | {} | {} | {} | {} | {} | {} | {} |",
                row.name,
                row.unit,
                cell(row.natter),
                if row.peer.is_some() {
                    row.peer_name
                } else {
                    ""
                },
                if row.peer.is_some() {
                    cell(row.peer)
                } else {
                    String::new()
                },
                row.ratio.map_or_else(String::new, |r| format!("{r:.2}")),
                row.target.as_deref().unwrap_or(""),
                met_cell(row.met),
            ));
        }
    }
    lines.join("\n")
}

/// The table: one line per figure, as Markdown (it goes into the README as it is).
pub fn table(rows: &[Row]) -> String {
    let mut lines = vec![
        "| scenario | figure | unit | natter | peer | peer value | natter/peer | target | met |"
            .to_owned(),
        "|---|---|---|---:|---|---:|---:|---|---|".to_owned(),
    ];
    for row in rows {
        let met = met_cell(row.met);
        lines.push(format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            row.scenario,
            row.name,
            row.unit,
            cell(row.natter),
            if row.peer.is_some() {
                row.peer_name
            } else {
                ""
            },
            cell(row.peer),
            row.ratio.map_or_else(String::new, |r| format!("{r:.2}")),
            row.target.as_deref().unwrap_or(""),
            met,
        ));
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_runs_and_ratio() {
        let runs = vec![
            vec![
                Figure::new("a", "x", "u")
                    .natter(1.0)
                    .peer("uWS", Some(2.0))
                    .target(Target::RatioAtLeast(0.75)),
            ],
            vec![
                Figure::new("a", "x", "u")
                    .natter(3.0)
                    .peer("uWS", Some(2.0)),
            ],
            vec![
                Figure::new("a", "x", "u")
                    .natter(2.0)
                    .peer("uWS", Some(4.0)),
            ],
        ];
        let rows = medians(&runs);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].natter, Some(2.0));
        assert_eq!(rows[0].peer, Some(2.0));
        assert_eq!(rows[0].ratio, Some(1.0));
        assert_eq!(rows[0].met, Some(true));
        assert_eq!(median(&[1.0, 4.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn goals_table_lists_every_goal() {
        let runs = vec![vec![
            Figure::new("busy-room", "sends/s", "1/s")
                .natter(12_000.0)
                .target(Target::AtLeast(10_000.0))
                .goal("busy-room"),
            Figure::new("busy-room", "ack p99", "ms")
                .natter(25.0)
                .target(Target::AtMost(20.0))
                .goal("busy-room"),
            Figure::new("idle", "per connection", "KiB")
                .natter(3.0)
                .target(Target::AtMost(4.0))
                .goal("idle-memory"),
        ]];
        let table = goals_table(&medians(&runs));
        for goal in GOALS {
            assert!(table.contains(goal.figure), "{}", goal.figure);
        }
        assert!(table.contains("| **busy room, 64 joined senders** |"));
        assert!(table.contains("**NOT MET**"));
        assert!(table.contains("**met**"));
        assert!(table.contains("**not measured**"));
    }
}
