//! Figures, the median over runs, targets, and the table and JSON the suite prints and writes.

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
}

/// A goal from issue #6, checked against the median.
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
    if magnitude >= 1000.0 {
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

/// The table: one line per figure, as Markdown (it goes into the README as it is).
pub fn table(rows: &[Row]) -> String {
    let mut lines = vec![
        "| scenario | figure | unit | natter | peer | peer value | natter/peer | target | met |"
            .to_owned(),
        "|---|---|---|---:|---|---:|---:|---|---|".to_owned(),
    ];
    for row in rows {
        let met = match row.met {
            Some(true) => "yes",
            Some(false) => "NO",
            None => "",
        };
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
}
