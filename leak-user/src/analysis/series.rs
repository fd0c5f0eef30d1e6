//! Bounded series of `(seconds, bytes)` readings, shared by `leak top`'s
//! processes and `leak trace`'s stacks, so the verdict rule gets the same
//! kind of input from both.

/// Keeps `points` at most `max` long: once it grows past, it is halved by
/// keeping the lower point of each neighbouring pair, so the troughs the
/// verdict reads survive every halving; the newest point stays as it was
/// (it is the reading shown now). Time resolution coarsens with age; the
/// series never grows without bound.
pub(crate) fn thin(points: &mut Vec<(f64, f64)>, max: usize) {
    if points.len() <= max.max(2) {
        return;
    }
    let newest = points.pop().expect("longer than two");
    let halved: Vec<(f64, f64)> = points
        .chunks(2)
        .map(|pair| {
            pair.iter()
                .copied()
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .expect("chunks are never empty")
        })
        .collect();
    *points = halved;
    points.push(newest);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halving_keeps_troughs_and_the_newest_point() {
        // A sawtooth: the troughs are at odd indices.
        let mut s: Vec<(f64, f64)> = (0..9)
            .map(|i| (i as f64, if i % 2 == 1 { 10.0 } else { 50.0 + i as f64 }))
            .collect();
        thin(&mut s, 8);
        assert_eq!(s.len(), 5);
        assert_eq!(s.last(), Some(&(8.0, 58.0)));
        assert!(s[..4].iter().all(|p| p.1 == 10.0), "{s:?}");
        // Under the bound: untouched.
        let mut short = vec![(0.0, 1.0), (1.0, 2.0)];
        thin(&mut short, 8);
        assert_eq!(short, vec![(0.0, 1.0), (1.0, 2.0)]);
    }
}
