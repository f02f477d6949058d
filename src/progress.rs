//! An opt-in progress bar for long `map`s (feature `progress`, built on `indicatif`).

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
            counter: Counter {
                // The first item takes the slow path: it shows at once and starts the ticker.
                left: 1,
                state: Box::new(State {
                    bar,
                    shown: 0,
                    counted: 0,
                    stride: 1,
                    asked: Arc::new(AtomicBool::new(false)),
                    ticker: None,
                    no_ticker: false,
                }),
            },
        }
    }
}

impl<I: Iterator> ProgressExt for I {}

/// The iterator returned by [`ProgressExt::progress`]: yields what the inner one yields,
/// advancing the bar; finishes the bar at the end.
///
/// Advancing an `indicatif` bar reads the clock and takes a lock, which costs more than a
/// cheap item itself; so the iterator only counts the items it yields, and a small thread of
/// its own, started with the first item, moves the bar 20 times a second (once a second after
/// a second without items; it stops when the iterator is exhausted or dropped). The iterator
/// hands its count to that thread every `stride` items, a stride it fits to the rate: it
/// doubles while the thread has not looked since the last hand-over, and halves when it has
/// (from every item, for slow items, up to every 4,096 items): about one hand-over per look.
/// An item costs a decrement and a test (well under a nanosecond). While items come,
/// the bar trails by about 100 ms (a second after a long pause); the items yielded since the
/// last hand-over (at most about 100 ms' worth) are shown when the next item comes, or when
/// the iterator is exhausted, dropped, or [`sync`](Self::sync)ed, after which the count is
/// exact.
#[derive(Debug)]
pub struct Progress<I> {
    inner: I,
    /// Apart from `inner` so that `fold` can hand `inner` on by value (the counter, which
    /// syncs the bar when dropped, stays).
    counter: Counter,
}

/// What [`Progress`] adds to the inner iterator: one count in the iterator itself (so that a
/// caller's loop keeps it in a register: the slow path is given the box, never the
/// iterator's address), and the rest behind a pointer.
#[derive(Debug)]
struct Counter {
    /// Items until the slow path, [`State::look`]: the items yielded so far are
    /// `state.counted + state.stride - left`.
    left: u64,
    state: Box<State>,
}

#[derive(Debug)]
struct State {
    bar: ProgressBar,
    /// Items counted on the bar so far (by this iterator; the ticker keeps its own).
    shown: u64,
    /// Items yielded up to the last look.
    counted: u64,
    /// Items from the last look to the next: 1 until a ticker runs, then fitted to the rate.
    stride: u64,
    /// Raised by the ticker at each of its looks, lowered by [`State::look`].
    asked: Arc<AtomicBool>,
    ticker: Option<Ticker>,
    /// The ticker's thread could not be started: each item is counted as it is yielded.
    no_ticker: bool,
}

/// The thread that moves the bar to the count, and what it shares with the iterator.
///
/// The thread moves the bar only with `stop`'s mutex held, and never once `stop` is set: so
/// stopping it is setting `stop` and reading `shown` under that mutex, without waiting for
/// the thread to end (it ends when it next wakes). Joining it would make the iterator's end
/// wait for the thread to be scheduled, milliseconds on a busy machine.
#[derive(Debug)]
struct Ticker {
    shared: Arc<TickerShared>,
}

#[derive(Debug)]
struct TickerShared {
    /// Items yielded, as last handed over by the iterator.
    count: AtomicU64,
    /// Items counted on the bar (written by the ticker, under `stop`'s mutex).
    shown: AtomicU64,
    stop: Mutex<bool>,
    wake: Condvar,
}

/// How often the ticker moves the bar while items come...
const TICK: Duration = Duration::from_millis(50);
/// ...and how often it looks once this many ticks saw none.
const IDLE_TICK: Duration = Duration::from_secs(1);
const IDLE_TICKS: u32 = 20;
/// The longest stride: the most items a stall can leave off the bar until the next item.
const MAX_STRIDE: u64 = 4096;

impl Ticker {
    fn start(bar: &ProgressBar, asked: &Arc<AtomicBool>, from: u64) -> Option<Ticker> {
        let shared = Arc::new(TickerShared {
            count: AtomicU64::new(from),
            shown: AtomicU64::new(from),
            stop: Mutex::new(false),
            wake: Condvar::new(),
        });
        let (s, bar, asked) = (shared.clone(), bar.clone(), asked.clone());
        std::thread::Builder::new()
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
                    if *stop {
                        // The iterator has taken over the bar.
                        break;
                    }
                    // The count last handed over.
                    let now = s.count.load(Ordering::Relaxed);
                    if now > shown {
                        bar.inc(now - shown);
                        shown = now;
                        s.shown.store(shown, Ordering::Relaxed);
                        still = 0;
                    } else {
                        still = still.saturating_add(1);
                    }
                    asked.store(true, Ordering::Relaxed);
                }
            })
            .ok()?;
        Some(Ticker { shared })
    }

    /// Stops the thread (it moves the bar no more once this returns; it ends when it next
    /// wakes, at once); returns the items it counted on the bar.
    fn stop(&self) -> u64 {
        let mut stop = self.shared.stop.lock().unwrap_or_else(|p| p.into_inner());
        *stop = true;
        let shown = self.shared.shown.load(Ordering::Relaxed);
        drop(stop);
        self.shared.wake.notify_one();
        shown
    }
}

impl Counter {
    /// Counts one item: the whole cost of the wrapper per item but once a stride.
    #[inline(always)]
    fn one(&mut self) {
        self.left -= 1;
        if self.left == 0 {
            self.left = self.state.look();
        }
    }
}

impl State {
    /// Items yielded so far, given the iterator's `left`.
    fn count(&self, left: u64) -> u64 {
        self.counted + self.stride - left
    }

    /// The slow path of [`Counter::one`], once a stride: hands the count to the ticker and
    /// fits the stride (or, on the first item, or the first after a `sync`, shows the count
    /// at once and starts a ticker). Returns the next stride.
    #[cold]
    #[inline(never)]
    fn look(&mut self) -> u64 {
        let count = self.count(0);
        self.counted = count;
        match &self.ticker {
            Some(t) => {
                t.shared.count.store(count, Ordering::Relaxed);
                self.stride = if self.asked.swap(false, Ordering::Relaxed) {
                    // A look since the last hand-over: hand over more often.
                    (self.stride / 2).max(1)
                } else {
                    (self.stride * 2).min(MAX_STRIDE)
                };
            }
            None => {
                self.show(count);
                if !self.no_ticker {
                    self.ticker = Ticker::start(&self.bar, &self.asked, count);
                    self.no_ticker = self.ticker.is_none();
                }
                // Without a ticker, each item comes here and is counted on the bar.
                self.stride = 1;
            }
        }
        self.stride
    }

    /// Stops the ticker and shows every item yielded on the bar; returns the iterator's new
    /// `left`: the next item takes the slow path (and starts a ticker).
    #[inline(never)]
    fn sync(&mut self, left: u64) -> u64 {
        let count = self.count(left);
        self.show(count);
        (self.counted, self.stride) = (count, 1);
        1
    }

    /// Stops the ticker and shows `count` on the bar.
    fn show(&mut self, count: u64) {
        if let Some(t) = self.ticker.take() {
            self.shown = t.stop();
        }
        if count > self.shown {
            self.bar.inc(count - self.shown);
            self.shown = count;
        }
    }

    /// The end of the items: the bar shows them all and is finished.
    #[cold]
    #[inline(never)]
    fn finish(&mut self, left: u64) -> u64 {
        let left = self.sync(left);
        self.bar.finish();
        left
    }
}

impl Drop for Counter {
    // Inline, so that only the box escapes into the call, not the count.
    #[inline]
    fn drop(&mut self) {
        self.state.sync(self.left);
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
        &self.counter.state.bar
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
        self.counter.left = self.counter.state.sync(self.counter.left);
    }
}

impl<I: Iterator> Iterator for Progress<I> {
    type Item = I::Item;

    #[inline]
    fn next(&mut self) -> Option<I::Item> {
        let item = self.inner.next();
        if item.is_some() {
            self.counter.one();
        } else {
            self.counter.left = self.counter.state.finish(self.counter.left);
        }
        item
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }

    /// The inner iterator's own `fold` (a pool's `map` has a faster one than `next` in a
    /// loop), counting each item as `next` does.
    fn fold<B, F>(self, init: B, mut f: F) -> B
    where
        F: FnMut(B, I::Item) -> B,
    {
        let Progress { inner, mut counter } = self;
        let acc = inner.fold(init, |acc, item| {
            counter.one();
            f(acc, item)
        });
        counter.left = counter.state.finish(counter.left);
        acc
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
    use super::{MAX_STRIDE, ProgressExt, format_rate};
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

    /// Waits (at most 10 s) until the bar reaches `at_least`.
    fn wait_for(bar: &ProgressBar, at_least: u64) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while bar.position() < at_least {
            assert!(
                std::time::Instant::now() < deadline,
                "the bar stayed at {} (expected {at_least})",
                bar.position()
            );
            std::thread::yield_now();
        }
    }

    #[test]
    fn the_ticker_moves_the_bar_while_items_come_and_after_they_stop() {
        let bar = ProgressBar::hidden();
        let mut it = (0..u64::MAX).progress_with(bar.clone());
        it.next();
        assert_eq!(bar.position(), 1, "the first item shows at once");
        // Items keep coming: the ticker alone moves the bar (or the wait fails).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut yielded = 1;
        while bar.position() < 2 {
            assert!(std::time::Instant::now() < deadline, "the bar stayed at 1");
            it.next();
            yielded += 1;
        }
        for _ in 0..1_000_000 {
            it.next();
        }
        yielded += 1_000_000;
        // Then a stall: at most the last stride is left off the bar.
        wait_for(&bar, yielded - MAX_STRIDE);
        assert!(bar.position() <= yielded);
        it.sync();
        assert_eq!(bar.position(), yielded, "exact after a sync");
        it.next();
        assert_eq!(
            bar.position(),
            yielded + 1,
            "the first item after a sync shows at once"
        );
    }

    #[test]
    fn the_count_is_exact_whenever_the_ticker_is_stopped() {
        // Many short iterators, each stopping its ticker at a different point of its loop.
        for n in 0..300u64 {
            let bar = ProgressBar::hidden();
            let items = 1_000 + n * 97;
            let mut it = (0..items).progress_with(bar.clone());
            for _ in 0..items / 2 {
                it.next();
            }
            it.sync();
            assert_eq!(bar.position(), items / 2);
            assert_eq!(it.count() as u64, items - items / 2);
            assert_eq!(bar.position(), items);
        }
    }

    #[test]
    fn fold_counts_every_item_and_finishes_the_bar() {
        let bar = ProgressBar::hidden();
        let (n, last) = (0..100_000u64)
            .progress_with(bar.clone())
            .fold((0, 0), |(n, _), x| (n + 1, x));
        assert_eq!((n, last), (100_000, 99_999));
        assert_eq!(bar.position(), 100_000);
        assert!(bar.is_finished());
        // A panic inside the fold: the items taken so far are still counted.
        let bar = ProgressBar::hidden();
        let it = (0..100_000u64).progress_with(bar.clone());
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            it.fold(0, |s, x| if x == 54_321 { panic!("stop") } else { s + x })
        }));
        assert!(caught.is_err());
        assert_eq!(bar.position(), 54_322);
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
