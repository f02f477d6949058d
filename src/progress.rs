//! An opt-in progress bar for long `map`s (feature `progress`, built on `indicatif`).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

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
        Progress {
            inner: self,
            bar,
            count: 0,
            shown: 0,
            ticker: None,
            no_ticker: false,
        }
    }
}

impl<I: Iterator> ProgressExt for I {}

/// The iterator returned by [`ProgressExt::progress`]: yields what the inner one yields,
/// advancing the bar; finishes the bar at the end.
///
/// Advancing an `indicatif` bar reads the clock, which costs more than a cheap item itself;
/// so the iterator only counts the items it yields, and a small thread of its own, started
/// with the first item, moves the bar to that count 20 times a second (once a second after
/// a second without items; it stops when the iterator is exhausted or dropped). While
/// iterating, the bar's position may trail by up to 50 ms (a second after a long pause); it
/// is exact once the iterator is exhausted, dropped, or [`sync`](Self::sync)ed.
#[derive(Debug)]
pub struct Progress<I> {
    inner: I,
    bar: ProgressBar,
    /// Items yielded so far.
    count: u64,
    /// Items counted on the bar so far (by this iterator; the ticker keeps its own).
    shown: u64,
    ticker: Option<Ticker>,
    /// The ticker's thread could not be started: each item is counted as it is yielded.
    no_ticker: bool,
}

/// The thread that moves the bar to the count, and what it shares with the iterator.
#[derive(Debug)]
struct Ticker {
    shared: Arc<TickerShared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Debug)]
struct TickerShared {
    /// Items yielded (written by the iterator).
    count: AtomicU64,
    /// Items counted on the bar (written by the ticker).
    shown: AtomicU64,
    stop: Mutex<bool>,
    wake: Condvar,
}

/// How often the ticker moves the bar while items come...
const TICK: Duration = Duration::from_millis(50);
/// ...and how often it looks once this many ticks saw none.
const IDLE_TICK: Duration = Duration::from_secs(1);
const IDLE_TICKS: u32 = 20;

impl Ticker {
    fn start(bar: &ProgressBar, from: u64) -> Option<Ticker> {
        let shared = Arc::new(TickerShared {
            count: AtomicU64::new(from),
            shown: AtomicU64::new(from),
            stop: Mutex::new(false),
            wake: Condvar::new(),
        });
        let (s, bar) = (shared.clone(), bar.clone());
        let thread = std::thread::Builder::new()
            .name("cf-progress".into())
            .spawn(move || {
                let mut shown = from;
                let mut still = 0u32;
                let mut stop = s.stop.lock().unwrap_or_else(|p| p.into_inner());
                while !*stop {
                    // While items come, a look every `TICK`; after a second without any,
                    // one a second (an iterator left alone costs next to nothing).
                    let tick = if still < IDLE_TICKS { TICK } else { IDLE_TICK };
                    stop = s
                        .wake
                        .wait_timeout(stop, tick)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                    let now = s.count.load(Ordering::Relaxed);
                    if now > shown {
                        bar.inc(now - shown);
                        shown = now;
                        s.shown.store(shown, Ordering::Relaxed);
                        still = 0;
                    } else {
                        still = still.saturating_add(1);
                    }
                }
            })
            .ok()?;
        Some(Ticker {
            shared,
            thread: Some(thread),
        })
    }

    /// Stops the thread.
    fn stop(&mut self) {
        *self.shared.stop.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
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

    /// Counts on the bar every item yielded so far, now (see the type's docs: the bar is
    /// otherwise moved 20 times a second).
    ///
    /// ```
    /// # use concurrent_futures::ProgressExt;
    /// let mut it = (0..100).progress();
    /// it.nth(9);
    /// it.sync();
    /// assert_eq!(it.bar().position(), 10);
    /// ```
    pub fn sync(&mut self) {
        if let Some(mut t) = self.ticker.take() {
            t.stop();
            self.shown = t.shared.shown.load(Ordering::Relaxed);
        }
        if self.count > self.shown {
            self.bar.inc(self.count - self.shown);
            self.shown = self.count;
        }
    }
}

impl<I> Drop for Progress<I> {
    fn drop(&mut self) {
        self.sync();
    }
}

impl<I: Iterator> Iterator for Progress<I> {
    type Item = I::Item;

    fn next(&mut self) -> Option<I::Item> {
        let item = self.inner.next();
        match (&item, &self.ticker) {
            (Some(_), Some(t)) => {
                self.count += 1;
                t.shared.count.store(self.count, Ordering::Relaxed);
            }
            (Some(_), None) => {
                // The first item (or the first after a `sync`) shows at once; a ticker
                // moves the bar from then on.
                self.count += 1;
                self.sync();
                if !self.no_ticker {
                    self.ticker = Ticker::start(&self.bar, self.count);
                    self.no_ticker = self.ticker.is_none();
                }
            }
            (None, _) => {
                self.sync();
                self.bar.finish();
            }
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
    use super::{ProgressExt, format_rate};
    use indicatif::ProgressBar;

    #[test]
    fn the_bar_counts_every_item_in_the_end_and_when_dropped_midway() {
        let bar = ProgressBar::hidden();
        assert_eq!((0..100_000u64).progress_with(bar.clone()).count(), 100_000);
        assert_eq!(bar.position(), 100_000);
        let bar = ProgressBar::hidden();
        let mut it = (0..100_000u64).progress_with(bar.clone());
        for _ in 0..12_345 {
            it.next();
        }
        assert!(bar.position() <= 12_345);
        drop(it);
        assert_eq!(
            bar.position(),
            12_345,
            "the items yielded are counted on drop"
        );
    }

    #[test]
    fn the_ticker_moves_the_bar_while_items_wait() {
        let bar = ProgressBar::hidden();
        let mut it = (0..10u64).progress_with(bar.clone());
        it.next();
        assert_eq!(bar.position(), 1, "the first item shows at once");
        it.next();
        it.next();
        // Nothing more is yielded: the ticker alone brings the bar to 3 (or the wait fails).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while bar.position() < 3 {
            assert!(
                std::time::Instant::now() < deadline,
                "the bar stayed at {}",
                bar.position()
            );
            std::thread::yield_now();
        }
        assert_eq!(bar.position(), 3);
        assert_eq!(it.count(), 7);
        assert_eq!(bar.position(), 10);
    }

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
