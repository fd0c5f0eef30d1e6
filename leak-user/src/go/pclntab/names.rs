//! Function names: the runtime's print form and near matches for
//! "no such function" messages.

use super::Pclntab;

impl Pclntab {
    /// Up to `n` function names close to `name`, best first: for "no such
    /// function" messages. Matches ignoring `(*…)` receiver syntax and case,
    /// then by edit distance, then by substring.
    pub(crate) fn near_matches(&self, name: &str, n: usize) -> Vec<String> {
        let query = normalize(name);
        let limit = (query.chars().count() / 4).max(2);
        let mut scored: Vec<(usize, &str)> = self
            .functions()
            .filter_map(|f| {
                let candidate = normalize(f.name);
                if candidate == query {
                    return Some((0, f.name));
                }
                // Cheap length filter before the quadratic distance.
                let len_gap = candidate.len().abs_diff(query.len());
                if len_gap <= limit {
                    let d = edit_distance(&candidate, &query);
                    if d <= limit {
                        return Some((d, f.name));
                    }
                }
                (query.len() >= 4 && candidate.contains(&query))
                    .then_some((limit + 1 + len_gap, f.name))
            })
            .collect();
        scored.sort_unstable();
        scored.dedup_by(|a, b| a.1 == b.1);
        scored
            .into_iter()
            .take(n)
            .map(|(_, s)| s.to_owned())
            .collect()
    }
}

/// The name as the runtime prints it (`funcNamePiecesForPrint`): type
/// arguments of a generic instantiation become `[...]`, so
/// `main.f[go.shape.int]` reads `main.f[...]`, as in pprof.
pub(crate) fn print_name(name: &str) -> String {
    match (name.find('['), name.rfind(']')) {
        (Some(open), Some(close)) if open < close => {
            format!("{}[...]{}", &name[..open], &name[close + 1..])
        }
        _ => name.to_owned(),
    }
}

/// Lower-cased name without receiver punctuation: `main.(*T).M` → `main.t.m`.
pub(super) fn normalize(name: &str) -> String {
    name.chars()
        .filter(|c| !matches!(c, '(' | ')' | '*'))
        .flat_map(char::to_lowercase)
        .collect()
}

/// Levenshtein distance over bytes (names are ASCII in practice).
pub(super) fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, &ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitute = prev[j] + usize::from(ca != cb);
            cur[j + 1] = substitute.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}
