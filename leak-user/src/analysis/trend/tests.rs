use super::*;

/// Deterministic noise in [-1, 1) (xorshift64*), so tests need no crate
/// and never flake.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let bits = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11;
        bits as f64 / (1u64 << 52) as f64 - 1.0
    }
}

/// `n` samples one every `dt` seconds of `bytes(t)`.
fn series(n: usize, dt: f64, bytes: impl Fn(f64) -> f64) -> Vec<(f64, f64)> {
    (0..n)
        .map(|i| {
            let t = i as f64 * dt;
            (t, bytes(t))
        })
        .collect()
}

/// A GC sawtooth: from `trough(t)`, climbs `swing` bytes over each
/// `period` seconds, then drops back.
fn sawtooth(t: f64, period: f64, swing: f64, trough: f64) -> f64 {
    trough + swing * (t % period) / period
}

fn process(samples: &[(f64, f64)]) -> Trend {
    assess(samples, None, &Thresholds::PROCESS)
}

fn close(a: f64, b: f64, tolerance: f64) -> bool {
    (a - b).abs() <= tolerance * b.abs().max(1e-9)
}

#[test]
fn flat_is_steady() {
    let trend = process(&series(300, 1.0, |_| 80.0 * MIB));
    assert_eq!(trend.verdict, Verdict::Steady, "{}", trend.reason);
    assert_eq!(trend.slope, 0.0);
    assert!(trend.reason.starts_with("troughs flat"), "{}", trend.reason);
}

#[test]
fn gc_sawtooth_back_to_the_same_trough_is_steady() {
    let mut noise = Noise(7);
    let samples: Vec<(f64, f64)> = series(600, 1.0, |t| sawtooth(t, 20.0, 40.0 * MIB, 50.0 * MIB))
        .into_iter()
        .map(|(t, b)| (t, b + 0.3 * MIB * noise.next()))
        .collect();
    let trend = process(&samples);
    assert_eq!(trend.verdict, Verdict::Steady, "{}", trend.reason);
}

#[test]
fn sawtooth_with_rising_troughs_is_leaking() {
    // Troughs rise 2 MiB/min under a 40 MiB swing.
    let rate = 2.0 * MIB / 60.0;
    let samples = series(600, 1.0, |t| {
        sawtooth(t, 20.0, 40.0 * MIB, 50.0 * MIB + rate * t)
    });
    let trend = process(&samples);
    assert_eq!(trend.verdict, Verdict::Leaking, "{}", trend.reason);
    assert!(close(trend.slope, rate, 0.05), "{} vs {rate}", trend.slope);
    assert!(
        trend
            .reason
            .starts_with("troughs rise 2.0 MiB/min (R²=1.00)"),
        "{}",
        trend.reason
    );
}

#[test]
fn slow_sawtooth_gets_one_trough_per_cycle() {
    // A collection every 90 s: about 7 cycles in ten minutes, fewer than
    // the default 12 slices.
    let steady = process(&series(600, 1.0, |t| {
        sawtooth(t, 90.0, 40.0 * MIB, 50.0 * MIB)
    }));
    assert_eq!(steady.verdict, Verdict::Steady, "{}", steady.reason);
    assert!(
        steady.reason.starts_with("troughs flat"),
        "{}",
        steady.reason
    );
    let rate = 20.0 * KIB;
    let leak = process(&series(600, 1.0, |t| {
        sawtooth(t, 90.0, 40.0 * MIB, 50.0 * MIB + rate * t)
    }));
    assert_eq!(leak.verdict, Verdict::Leaking, "{}", leak.reason);
    assert!(close(leak.slope, rate, 0.05), "{} vs {rate}", leak.slope);
}

#[test]
fn too_few_sawtooth_cycles_is_at_most_growing() {
    let rate = 20.0 * KIB;
    let trend = process(&series(600, 1.0, |t| {
        sawtooth(t, 200.0, 40.0 * MIB, 50.0 * MIB + rate * t)
    }));
    assert_eq!(trend.verdict, Verdict::Growing, "{}", trend.reason);
    assert!(trend.reason.contains("watch longer"), "{}", trend.reason);
}

#[test]
fn step_then_plateau_is_steady() {
    let mut noise = Noise(11);
    let samples = series(
        600,
        1.0,
        |t| {
            if t < 150.0 {
                100.0 * MIB
            } else {
                150.0 * MIB
            }
        },
    )
    .into_iter()
    .map(|(t, b)| (t, b + 0.2 * MIB * noise.next()))
    .collect::<Vec<_>>();
    let trend = process(&samples);
    assert!(trend.change_bytes > 0.0);
    assert_eq!(trend.verdict, Verdict::Steady, "{}", trend.reason);
    assert!(
        trend.reason.starts_with("troughs rose 50.") && trend.reason.contains("levelled off"),
        "{}",
        trend.reason
    );
}

#[test]
fn cache_that_fills_then_stops_is_steady() {
    let samples = series(600, 1.0, |t| {
        20.0 * MIB + 200.0 * MIB * (1.0 - (-t / 60.0).exp())
    });
    let trend = process(&samples);
    assert_eq!(trend.verdict, Verdict::Steady, "{}", trend.reason);
}

#[test]
fn linear_growth_is_leaking() {
    let rate = 100.0 * KIB;
    let trend = process(&series(120, 1.0, |t| 30.0 * MIB + rate * t));
    assert_eq!(trend.verdict, Verdict::Leaking, "{}", trend.reason);
    assert!(close(trend.slope, rate, 1e-9), "{}", trend.slope);
    assert!(close(trend.overall.slope, rate, 1e-9));
    assert!(close(trend.recent_slope, rate, 1e-9));
}

#[test]
fn noisy_linear_growth_is_leaking() {
    let mut noise = Noise(42);
    let rate = 10.0 * KIB;
    let samples: Vec<(f64, f64)> = series(300, 1.0, |t| 40.0 * MIB + rate * t)
        .into_iter()
        .map(|(t, b)| (t, b + 300.0 * KIB * noise.next()))
        .collect();
    let trend = process(&samples);
    assert_eq!(trend.verdict, Verdict::Leaking, "{}", trend.reason);
    assert!(close(trend.slope, rate, 0.15), "{} vs {rate}", trend.slope);
}

#[test]
fn slow_leak_under_a_big_sawtooth_is_leaking() {
    // Troughs rise 6 MiB over the window; peaks swing 60 MiB.
    let rate = 10.0 * KIB;
    let samples = series(600, 1.0, |t| {
        sawtooth(t, 20.0, 60.0 * MIB, 20.0 * MIB + rate * t)
    });
    let trend = process(&samples);
    assert_eq!(trend.verdict, Verdict::Leaking, "{}", trend.reason);
    // The whole series hides it: its line explains almost nothing.
    assert!(trend.overall.r2 < 0.1, "{}", trend.overall.r2);
    assert!(trend.troughs.r2 > 0.99, "{}", trend.troughs.r2);
}

#[test]
fn falling_troughs_are_shrinking() {
    let trend = process(&series(300, 1.0, |t| 200.0 * MIB - 300.0 * KIB * t));
    assert_eq!(trend.verdict, Verdict::Shrinking, "{}", trend.reason);
    assert!(trend.slope < 0.0);
}

#[test]
fn drop_then_plateau_is_steady() {
    let trend = process(&series(300, 1.0, |t| {
        if t < 60.0 {
            200.0 * MIB
        } else {
            120.0 * MIB
        }
    }));
    assert_eq!(trend.verdict, Verdict::Steady, "{}", trend.reason);
}

#[test]
fn slowing_growth_is_growing() {
    // Full speed for two thirds of the window, a quarter of it after.
    let rate = 100.0 * KIB;
    let samples = series(300, 1.0, |t| {
        if t < 200.0 {
            rate * t
        } else {
            rate * 200.0 + rate / 4.0 * (t - 200.0)
        }
    });
    let trend = process(&samples);
    assert_eq!(trend.verdict, Verdict::Growing, "{}", trend.reason);
    assert!(trend.reason.contains("slowing"), "{}", trend.reason);
}

#[test]
fn too_few_points_or_too_short_is_not_leaking() {
    let leak = |t: f64| 10.0 * MIB + MIB * t;
    let few = process(&series(5, 10.0, leak));
    assert_eq!(few.verdict, Verdict::Growing, "{}", few.reason);
    assert!(few.reason.contains("only 5 samples"), "{}", few.reason);
    let short = process(&series(20, 1.0, leak));
    assert_eq!(short.verdict, Verdict::Growing, "{}", short.reason);
    for samples in [vec![], vec![(0.0, MIB)], vec![(3.0, MIB), (3.0, 9.0 * MIB)]] {
        let trend = process(&samples);
        assert_eq!(trend.verdict, Verdict::Steady, "{}", trend.reason);
        assert!(
            trend.reason.starts_with("not enough data"),
            "{}",
            trend.reason
        );
    }
}

#[test]
fn uneven_unsorted_samples_with_gaps_still_judge() {
    let mut noise = Noise(3);
    let mut t = 0.0;
    let mut samples = Vec::new();
    while t < 600.0 {
        samples.push((t, 5.0 * MIB + 20.0 * KIB * t));
        t += 1.0 + 9.0 * (noise.next() + 1.0);
    }
    samples.push((f64::NAN, 0.0));
    samples.reverse();
    let trend = process(&samples);
    assert_eq!(trend.verdict, Verdict::Leaking, "{}", trend.reason);
    assert_eq!(trend.points, samples.len() - 1);
}

#[test]
fn churn_allocates_much_and_keeps_nothing() {
    let mut noise = Noise(5);
    let outstanding: Vec<(f64, f64)> = series(300, 1.0, |_| MIB)
        .into_iter()
        .map(|(t, b)| (t, b + 20.0 * KIB * noise.next()))
        .collect();
    let allocated = series(300, 1.0, |t| MIB * t);
    let trend = assess(&outstanding, Some(&allocated), &Thresholds::STACK);
    assert_eq!(trend.verdict, Verdict::Churn, "{}", trend.reason);
    assert_eq!(trend.allocated_bytes, Some(299.0 * MIB));

    // Allocating little is plain Steady; a leaking stack stays Leaking.
    let little = series(300, 1.0, |t| 10.0 * KIB * t);
    let steady = assess(&outstanding, Some(&little), &Thresholds::STACK);
    assert_eq!(steady.verdict, Verdict::Steady, "{}", steady.reason);
    let leaking = series(300, 1.0, |t| 4.0 * KIB * t);
    let trend = assess(&leaking, Some(&allocated), &Thresholds::STACK);
    assert_eq!(trend.verdict, Verdict::Leaking, "{}", trend.reason);
}

#[test]
fn stack_thresholds_see_smaller_leaks_than_process_ones() {
    // 300 KiB over five minutes, from nothing.
    let samples = series(300, 1.0, |t| KIB * t);
    assert_eq!(
        assess(&samples, None, &Thresholds::STACK).verdict,
        Verdict::Leaking
    );
    assert_eq!(process(&samples).verdict, Verdict::Steady);
}

#[test]
fn linear_fit_is_exact_on_a_perfect_line() {
    let points: Vec<(f64, f64)> = (0..50)
        .map(|i| {
            let x = 1.7e9 + i as f64 * 2.5;
            (x, 3.0 * (x - 1.7e9) + 7.0)
        })
        .collect();
    let fit = linear_fit(&points);
    assert!(close(fit.slope, 3.0, 1e-9), "{fit:?}");
    assert!(close(fit.intercept, 7.0 - 3.0 * 1.7e9, 1e-9), "{fit:?}");
    assert!(close(fit.r2, 1.0, 1e-12), "{fit:?}");
}

#[test]
fn linear_fit_degenerate_inputs() {
    assert_eq!(linear_fit(&[]), Fit::default());
    let one = linear_fit(&[(1.0, 5.0)]);
    assert_eq!((one.slope, one.intercept, one.r2), (0.0, 5.0, 0.0));
    let flat = linear_fit(&[(0.0, 2.0), (1.0, 2.0), (2.0, 2.0)]);
    assert_eq!((flat.slope, flat.intercept, flat.r2), (0.0, 2.0, 1.0));
    let noisy = linear_fit(&[(0.0, 0.0), (1.0, 1.0), (2.0, 0.0), (3.0, 1.0)]);
    assert!(noisy.r2 > 0.0 && noisy.r2 < 0.5, "{noisy:?}");
}

#[test]
fn slope_per_unit_gives_bytes_per_request() {
    // Requests arrive at a rate that changes every 10 s; the counter is
    // read every 10 s, bytes every 5 s.
    let rates = [5.0, 50.0, 20.0, 0.0, 80.0, 10.0, 30.0];
    let mut work = vec![(0.0, 0.0)];
    for (i, r) in rates.iter().enumerate() {
        let (_, done) = work[i];
        work.push(((i + 1) as f64 * 10.0, done + r * 10.0));
    }
    let bytes: Vec<(f64, f64)> = (0..=16)
        .map(|i| {
            let t = i as f64 * 5.0;
            (
                t,
                3.0 * MIB + 2048.0 * interpolate(&work, t).unwrap_or(1e12),
            )
        })
        .collect();
    let fit = slope_per_unit(&bytes, &work);
    assert!(close(fit.slope, 2048.0, 1e-9), "{fit:?}");
    assert!(close(fit.intercept, 3.0 * MIB, 1e-9), "{fit:?}");
    // Bytes at t = 75 and 80 lie past the counter's last reading: dropped,
    // or the wild values given them would ruin the fit.
    assert!(fit.r2 > 0.999_999, "{fit:?}");
}

#[test]
fn verdicts_pad_like_strings() {
    assert_eq!(format!("{:<8}|", Verdict::Churn), "churn   |");
}

/// The verdict and reason on a goroutine count series: 21 reads, 2 s apart.
fn goroutines(count: impl Fn(f64) -> f64) -> (Verdict, String) {
    let t = assess(&series(21, 2.0, count), None, &Thresholds::GOROUTINES);
    (t.verdict, t.reason)
}

#[test]
fn goroutine_counts_are_judged_in_goroutines() {
    // 500 leaked before, then 50 a second for 40 s.
    let (verdict, reason) = goroutines(|t| 500.0 + 50.0 * t);
    assert_eq!(verdict, Verdict::Leaking, "{reason}");
    assert!(reason.starts_with("troughs rise 3000/min"), "{reason}");
    // A pool of 8 workers holds still.
    let (verdict, reason) = goroutines(|_| 8.0);
    assert_eq!(verdict, Verdict::Steady, "{reason}");
    assert!(
        reason.contains("+0 over 40s (under 10 goroutines)"),
        "{reason}"
    );
    // One more request in flight now and then is no leak.
    let (verdict, reason) = goroutines(|t| 8.0 + (t as u64 % 3) as f64);
    assert_eq!(verdict, Verdict::Steady, "{reason}");
}
