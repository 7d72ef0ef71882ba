//! The queue Events wait in on their way to the API server, and the rate
//! they leave it at.
//!
//! This module owns the queue (bounded: beyond [`EVENT_QUEUE`] an Event is
//! dropped with a warning, as the kubelet's event broadcaster drops them)
//! and the token bucket of `--event-qps` and `--event-burst`. It must
//! never make a pod wait for its Events: workers only enqueue.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::Event;

use crate::pods::events::EventRecorder;

/// Events waiting to be sent, at most this many; beyond it they are
/// dropped with a warning, as the kubelet's event broadcaster does.
pub(crate) const EVENT_QUEUE: usize = 4096;

/// Events sent to the API server at once.
pub(crate) const EVENTS_IN_FLIGHT: usize = 4;

/// How fast the node creates Events (`--event-qps`, `--event-burst`), with
/// the kubelet's defaults (`eventRecordQPS`, `eventBurst`): 50 per second
/// after a burst of 100. Events are the most numerous writes a node makes
/// (three per container start); the limit keeps a crash-looping pod or a
/// burst of pod starts from flooding the API server with them. They wait
/// in the queue meanwhile, off the pods' path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventRate {
    /// Events per second; 0 means no limit.
    pub qps: u32,
    /// How many may go at once after a quiet spell (at least 1).
    pub burst: u32,
}

impl Default for EventRate {
    fn default() -> Self {
        EventRate {
            qps: 50,
            burst: 100,
        }
    }
}

/// A token bucket for [`EventRate`]: `burst` tokens, refilled at `qps` per
/// second; a send that finds none waits for its own.
#[derive(Debug)]
struct Bucket {
    qps: f64,
    capacity: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate: EventRate, now: Instant) -> Option<Bucket> {
        (rate.qps > 0).then(|| Bucket {
            qps: f64::from(rate.qps),
            capacity: f64::from(rate.burst.max(1)),
            tokens: f64::from(rate.burst.max(1)),
            at: now,
        })
    }

    /// Takes a token at `now`: how long to wait before sending (zero if a
    /// token was there). Tokens may go negative: each waiting send has
    /// reserved its own.
    fn take(&mut self, now: Instant) -> Duration {
        let refill = now.saturating_duration_since(self.at).as_secs_f64() * self.qps;
        self.tokens = (self.tokens + refill).min(self.capacity) - 1.0;
        self.at = now;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.qps)
        }
    }
}

/// The sending side of the event queue, and the task that drains it at
/// `rate`.
pub(crate) fn event_queue(
    recorder: Arc<EventRecorder>,
    rate: EventRate,
) -> tokio::sync::mpsc::Sender<(Event, ObjectReference)> {
    let (sender, receiver) = tokio::sync::mpsc::channel::<(Event, ObjectReference)>(EVENT_QUEUE);
    let mut bucket = Bucket::new(rate, Instant::now());
    tokio::spawn(async move {
        use futures_util::StreamExt;
        tokio_stream_of(receiver)
            .then(move |item| {
                let wait = bucket
                    .as_mut()
                    .map_or(Duration::ZERO, |b| b.take(Instant::now()));
                async move {
                    if !wait.is_zero() {
                        tokio::time::sleep(wait).await;
                    }
                    item
                }
            })
            .for_each_concurrent(EVENTS_IN_FLIGHT, |(event, pod)| {
                let recorder = recorder.clone();
                async move {
                    if let Err(error) = recorder.publish(&event, &pod).await {
                        tracing::warn!(%error, reason = %event.reason, "cannot record an event");
                    }
                }
            })
            .await;
    });
    sender
}

fn tokio_stream_of<T: Send + 'static>(
    mut receiver: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_go_at_once_up_to_the_burst_then_at_the_rate() {
        let start = Instant::now();
        let rate = EventRate { qps: 50, burst: 3 };
        let mut bucket = Bucket::new(rate, start).unwrap();
        let ms = |n: u64| Duration::from_millis(n);
        // The burst: at once.
        for _ in 0..3 {
            assert_eq!(bucket.take(start), Duration::ZERO);
        }
        // Then one per 20 ms: a send at once waits for its token...
        assert_eq!(bucket.take(start), ms(20));
        // ...and the next, sent when that one went, waits another 20 ms.
        assert_eq!(bucket.take(start + ms(20)), ms(20));
        // After a quiet spell the burst is back, never more.
        let later = start + Duration::from_secs(10);
        for _ in 0..3 {
            assert_eq!(bucket.take(later), Duration::ZERO);
        }
        assert_eq!(bucket.take(later), ms(20));
    }

    #[test]
    fn no_event_limit_at_zero_qps() {
        assert!(Bucket::new(EventRate { qps: 0, burst: 10 }, Instant::now()).is_none());
        // A burst of 0 still lets one through.
        let now = Instant::now();
        let mut bucket = Bucket::new(EventRate { qps: 10, burst: 0 }, now).unwrap();
        assert_eq!(bucket.take(now), Duration::ZERO);
        assert_eq!(bucket.take(now), Duration::from_millis(100));
    }
}
