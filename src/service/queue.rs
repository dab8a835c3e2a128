//! A channel between the threads of `watch` that sleeps at once.
//!
//! `crossbeam_channel` (and `std::sync::mpsc`, built on it) spins and
//! yields for a while before a receiver goes to sleep. That suits threads
//! that expect a message within microseconds; the engine and the sink
//! threads of `watch` wait milliseconds to hours, and at a few hundred
//! changes a second the spinning and `sched_yield` calls were a tenth of
//! the engine's CPU. Here a receiver with nothing to take sleeps on a
//! condition variable straight away, and a sender wakes it (one futex
//! call) only when it sleeps. Same names and errors as `crossbeam_channel`,
//! for the few calls `watch` makes.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub use crossbeam_channel::{RecvTimeoutError, SendError, TryRecvError, TrySendError};

struct State<T> {
    items: VecDeque<T>,
    senders: usize,
    receiver: bool,
    /// The receiver sleeps (or is about to): a send must wake it.
    receiver_waits: bool,
    /// Senders sleeping until there is room.
    senders_wait: usize,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    /// Signalled when an item comes or the last sender goes.
    filled: Condvar,
    /// Signalled when room is made or the receiver goes.
    room: Condvar,
    cap: usize,
}

impl<T> Shared<T> {
    /// The state; a thread that panicked holding it left whole items.
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The sending half; cloned for each producer.
pub struct Sender<T>(Arc<Shared<T>>);

/// The receiving half (one consumer).
pub struct Receiver<T>(Arc<Shared<T>>);

/// A channel holding at most `cap` items (senders wait, or `try_send`
/// fails, when it is full).
pub fn bounded<T>(cap: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::new(),
            senders: 1,
            receiver: true,
            receiver_waits: false,
            senders_wait: 0,
        }),
        filled: Condvar::new(),
        room: Condvar::new(),
        cap: cap.max(1),
    });
    (Sender(shared.clone()), Receiver(shared))
}

/// A channel without a limit (its producers are bounded by other means).
pub fn unbounded<T>() -> (Sender<T>, Receiver<T>) {
    bounded(usize::MAX)
}

impl<T> Sender<T> {
    /// Queues `item`, waiting for room while the channel is full.
    pub fn send(&self, item: T) -> Result<(), SendError<T>> {
        let mut s = self.0.lock();
        loop {
            if !s.receiver {
                return Err(SendError(item));
            }
            if s.items.len() < self.0.cap {
                break;
            }
            s.senders_wait += 1;
            s = self.0.room.wait(s).unwrap_or_else(|p| p.into_inner());
            s.senders_wait -= 1;
        }
        self.push(s, item);
        Ok(())
    }

    /// Queues `item` if there is room now.
    pub fn try_send(&self, item: T) -> Result<(), TrySendError<T>> {
        let s = self.0.lock();
        if !s.receiver {
            return Err(TrySendError::Disconnected(item));
        }
        if s.items.len() >= self.0.cap {
            return Err(TrySendError::Full(item));
        }
        self.push(s, item);
        Ok(())
    }

    fn push(&self, mut s: MutexGuard<'_, State<T>>, item: T) {
        s.items.push_back(item);
        let wake = s.receiver_waits;
        s.receiver_waits = false;
        drop(s);
        if wake {
            self.0.filled.notify_one();
        }
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.0.lock().senders += 1;
        Sender(self.0.clone())
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut s = self.0.lock();
        s.senders -= 1;
        if s.senders == 0 {
            drop(s);
            self.0.filled.notify_all();
        }
    }
}

impl<T> Receiver<T> {
    /// Takes the next item, waiting up to `timeout` for one.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        let deadline = Instant::now().checked_add(timeout);
        let mut s = self.0.lock();
        loop {
            if let Some(item) = s.items.pop_front() {
                self.made_room(s);
                return Ok(item);
            }
            if s.senders == 0 {
                return Err(RecvTimeoutError::Disconnected);
            }
            let left = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(3600),
            };
            if left.is_zero() {
                return Err(RecvTimeoutError::Timeout);
            }
            s.receiver_waits = true;
            s = self
                .0
                .filled
                .wait_timeout(s, left)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
            s.receiver_waits = false;
        }
    }

    /// Takes the next item if one is there.
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        let mut s = self.0.lock();
        match s.items.pop_front() {
            Some(item) => {
                self.made_room(s);
                Ok(item)
            }
            None if s.senders == 0 => Err(TryRecvError::Disconnected),
            None => Err(TryRecvError::Empty),
        }
    }

    /// Everything queued now, in order.
    pub fn try_iter(&self) -> std::collections::vec_deque::IntoIter<T> {
        let mut s = self.0.lock();
        let items = std::mem::take(&mut s.items);
        self.made_room(s);
        items.into_iter()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.0.lock().items.is_empty()
    }

    fn made_room(&self, s: MutexGuard<'_, State<T>>) {
        let wake = s.senders_wait > 0;
        drop(s);
        if wake {
            self.0.room.notify_all();
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let mut s = self.0.lock();
        s.receiver = false;
        s.items.clear();
        drop(s);
        self.0.room.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    #[test]
    fn items_come_out_in_order() {
        let (tx, rx) = bounded(4);
        for i in 0..4 {
            tx.send(i).unwrap();
        }
        assert!(matches!(tx.try_send(9), Err(TrySendError::Full(9))));
        let got: Vec<i32> = (0..4)
            .map(|_| rx.recv_timeout(Duration::ZERO).unwrap())
            .collect();
        assert_eq!(got, vec![0, 1, 2, 3]);
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(1)),
            Err(RecvTimeoutError::Timeout)
        );
    }

    #[test]
    fn a_sleeping_receiver_is_woken_by_another_thread() {
        let (tx, rx) = bounded(1);
        let t = thread::spawn(move || {
            for i in 0..1000 {
                // Waits for room: the receiver takes one at a time.
                tx.send(i).unwrap();
            }
        });
        for i in 0..1000 {
            assert_eq!(rx.recv_timeout(Duration::from_secs(60)), Ok(i));
        }
        t.join().unwrap();
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(60)),
            Err(RecvTimeoutError::Disconnected)
        );
    }

    #[test]
    fn the_last_sender_gone_disconnects_and_the_receiver_gone_fails_sends() {
        let (tx, rx) = unbounded::<u8>();
        let tx2 = tx.clone();
        drop(tx);
        tx2.send(1).unwrap();
        drop(tx2);
        assert_eq!(rx.try_recv(), Ok(1));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
        let (tx, rx) = bounded::<u8>(1);
        drop(rx);
        assert!(tx.send(1).is_err());
        assert!(matches!(tx.try_send(1), Err(TrySendError::Disconnected(1))));
    }

    #[test]
    fn try_iter_takes_everything_queued() {
        let (tx, rx) = unbounded();
        for i in 0..3 {
            tx.send(i).unwrap();
        }
        assert_eq!(rx.try_iter().collect::<Vec<_>>(), vec![0, 1, 2]);
        assert!(rx.is_empty());
    }
}
