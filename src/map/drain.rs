//! [`Drain`]: the results of one finished chunk, yielded in order.

use crate::chunk::Chunk;
use crate::error::TaskError;

/// Yields the results of one finished chunk, in order.
pub(super) struct Drain<R> {
    values: std::vec::IntoIter<R>,
    errors: std::vec::IntoIter<(u32, TaskError)>,
    /// Position of the next item and of the next failed item (`u32::MAX`: none).
    pos: u32,
    next_error_at: u32,
    next_error: Option<TaskError>,
    /// Error repeated for every item when the whole chunk failed.
    whole: Option<(TaskError, usize)>,
}

impl<R> Drain<R> {
    /// Items not yet yielded.
    pub(super) fn remaining(&self) -> usize {
        match &self.whole {
            Some((_, n)) => *n,
            None => self.values.len() + self.errors.len() + usize::from(self.next_error.is_some()),
        }
    }

    pub(super) fn empty() -> Self {
        Drain {
            values: Vec::new().into_iter(),
            errors: Vec::new().into_iter(),
            pos: 0,
            next_error_at: u32::MAX,
            next_error: None,
            whole: None,
        }
    }

    pub(super) fn of(chunk: Chunk<R>) -> Self {
        let mut d = Drain {
            values: chunk.values.into_iter(),
            errors: chunk.errors.into_iter(),
            ..Drain::empty()
        };
        d.load_next_error();
        d
    }

    pub(super) fn failed(err: TaskError, len: usize) -> Self {
        Drain {
            whole: Some((err, len)),
            ..Drain::empty()
        }
    }

    fn load_next_error(&mut self) {
        match self.errors.next() {
            Some((i, e)) => {
                self.next_error_at = i;
                self.next_error = Some(e);
            }
            None => self.next_error_at = u32::MAX,
        }
    }

    /// The common case, kept small so that it inlines into the caller's loop.
    #[inline]
    pub(super) fn next(&mut self) -> Option<Result<R, TaskError>> {
        if self.pos != self.next_error_at
            && let Some(v) = self.values.next()
        {
            self.pos += 1;
            return Some(Ok(v));
        }
        self.next_slow()
    }

    /// Feeds every remaining result to `f`; a chunk without failures goes straight over its
    /// values (no per-item `Option` shuffling).
    #[inline]
    pub(super) fn fold_into<B>(
        &mut self,
        mut acc: B,
        f: &mut impl FnMut(B, Result<R, TaskError>) -> B,
    ) -> B {
        if self.whole.is_none() && self.next_error_at == u32::MAX {
            for v in self.values.by_ref() {
                acc = f(acc, Ok(v));
            }
            return acc;
        }
        while let Some(r) = self.next() {
            acc = f(acc, r);
        }
        acc
    }

    #[inline(never)]
    fn next_slow(&mut self) -> Option<Result<R, TaskError>> {
        if let Some((err, left)) = &mut self.whole {
            if *left == 0 {
                return None;
            }
            *left -= 1;
            return Some(Err(err.clone()));
        }
        if self.pos == self.next_error_at {
            let e = self.next_error.take()?;
            self.pos += 1;
            self.load_next_error();
            return Some(Err(e));
        }
        None
    }
}
