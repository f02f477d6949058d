//! An opt-in progress bar for long `map`s (feature `progress`, built on `indicatif`).

use std::fmt;

use indicatif::{ProgressBar, ProgressState, ProgressStyle};

/// Adds [`progress`](ProgressExt::progress) to every iterator: in particular to the
/// [`Map`](crate::Map) and [`MapUnordered`](crate::MapUnordered) iterators of every backend,
/// which know their length when their input does.
///
/// ```
/// use concurrent_futures::{Executor, ProgressExt, ThreadPoolExecutor};
/// fn square(x: u64) -> u64 { x * x }
/// let pool = ThreadPoolExecutor::new(2);
/// let squares: Vec<u64> = pool
///     .map(square, 0..1000)
///     .progress() // counts results as they are yielded
///     .map(Result::unwrap)
///     .collect();
/// assert_eq!(squares.len(), 1000);
/// ```
pub trait ProgressExt: Iterator + Sized {
    /// Shows a bar on stderr that advances as items are yielded: a bar with a count and an
    /// estimate of the time left when the length is known, a spinner otherwise. The bar is
    /// hidden when stderr is not a terminal.
    ///
    /// ```
    /// # use concurrent_futures::ProgressExt;
    /// assert_eq!((0..10).progress().count(), 10);
    /// ```
    fn progress(self) -> Progress<Self> {
        let bar = match self.size_hint() {
            (lo, Some(hi)) if lo == hi => ProgressBar::new(hi as u64).with_style(
                ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} [{elapsed_precise} < {eta_precise}] {rate}",
                )
                .map(|style| style.with_key("rate", rate))
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            ),
            _ => ProgressBar::new_spinner(),
        };
        self.progress_with(bar)
    }

    /// As [`progress`](Self::progress), with a bar of your own (a style, a message, a
    /// `MultiProgress` line).
    ///
    /// ```
    /// # use concurrent_futures::ProgressExt;
    /// use concurrent_futures::indicatif::ProgressBar;
    /// let bar = ProgressBar::hidden();
    /// assert_eq!((0..5).progress_with(bar.clone()).sum::<i32>(), 10);
    /// assert_eq!(bar.position(), 5);
    /// ```
    fn progress_with(self, bar: ProgressBar) -> Progress<Self> {
        Progress { inner: self, bar }
    }
}

impl<I: Iterator> ProgressExt for I {}

/// The iterator returned by [`ProgressExt::progress`]: yields what the inner one yields,
/// advancing the bar; finishes the bar at the end.
#[derive(Debug)]
pub struct Progress<I> {
    inner: I,
    bar: ProgressBar,
}

impl<I> Progress<I> {
    /// The bar.
    ///
    /// ```
    /// # use concurrent_futures::ProgressExt;
    /// let it = (0..3).progress();
    /// assert_eq!(it.bar().length(), Some(3));
    /// ```
    pub fn bar(&self) -> &ProgressBar {
        &self.bar
    }
}

impl<I: Iterator> Iterator for Progress<I> {
    type Item = I::Item;

    fn next(&mut self) -> Option<I::Item> {
        let item = self.inner.next();
        match item {
            Some(_) => self.bar.inc(1),
            None => self.bar.finish(),
        }
        item
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

/// The bar's `{rate}`: items per second with three significant digits ("0.52/s", "12.3/s",
/// "1,234/s"), where indicatif's `{per_sec}` prints four decimals whatever the rate.
fn rate(state: &ProgressState, out: &mut dyn fmt::Write) {
    let _ = write!(out, "{}/s", format_rate(state.per_sec()));
}

fn format_rate(per_sec: f64) -> String {
    if !per_sec.is_finite() || per_sec <= 0.0 {
        return "0".to_string();
    }
    if per_sec < 100.0 {
        // Three significant digits from 1 on, two below: 12.3, 1.23, 0.52, 0.052.
        let decimals = (1 - per_sec.log10().floor() as i32).max(1) as usize;
        let decimals = if per_sec >= 10.0 { 1 } else { decimals.max(2) };
        return format!("{per_sec:.decimals$}");
    }
    let digits = format!("{per_sec:.0}");
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    grouped
}

#[cfg(test)]
mod tests {
    use super::format_rate;

    #[test]
    fn rates_have_sensible_precision() {
        assert_eq!(format_rate(0.0), "0");
        assert_eq!(format_rate(0.5234), "0.52");
        assert_eq!(format_rate(0.05234), "0.052");
        assert_eq!(format_rate(1.23456), "1.23");
        assert_eq!(format_rate(12.3456), "12.3");
        assert_eq!(format_rate(123.456), "123");
        assert_eq!(format_rate(1234.5678), "1,235");
        assert_eq!(format_rate(2_825_123.9), "2,825,124");
    }
}
