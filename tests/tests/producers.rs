//! Room producers start with a room's first subscriber and are cancelled
//! when its last one leaves, however it leaves.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use switchboard_core::Config;
use switchboard_server::{Runtime, ServerBuilder};
use switchboard_tests::{WAIT, eventually};
use switchboard_tokio::client::{Client, ClientOptions, Event};

struct Live(Arc<AtomicUsize>);

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_lives_exactly_while_the_room_has_subscribers_tokio() {
    producer_lives_exactly_while_the_room_has_subscribers::<switchboard_tokio::Tokio>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_lives_exactly_while_the_room_has_subscribers_smol() {
    producer_lives_exactly_while_the_room_has_subscribers::<switchboard_smol::Smol>().await;
}

/// The producer sleeps with its runtime's timer.
async fn producer_lives_exactly_while_the_room_has_subscribers<R: Runtime>() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let live = Arc::new(AtomicUsize::new(0));
        let started = Arc::new(AtomicUsize::new(0));
        let (l, s) = (live.clone(), started.clone());
        let server = ServerBuilder::<_, R>::new(Config {
            allow_anonymous: true,
            ..Config::default()
        })
        .producer("ticker:*", move |room| {
            let (l, s) = (l.clone(), s.clone());
            async move {
                l.fetch_add(1, Ordering::SeqCst);
                s.fetch_add(1, Ordering::SeqCst);
                let _live = Live(l);
                let mut n = 0u64;
                loop {
                    n += 1;
                    let _ = room
                        .publish(format!("{{\"tick\":{n},\"room\":\"{}\"}}", room.room()))
                        .await;
                    let rt = R::default();
                    rt.sleep_until(std::time::Instant::now() + Duration::from_millis(20))
                        .await;
                }
            }
        })
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
        let opts = || ClientOptions {
            timeout: WAIT,
            ..ClientOptions::default()
        };
        let mut a = Client::connect(&server.ws_url(), opts()).await.unwrap();
        let mut b = Client::connect(&server.ws_url(), opts()).await.unwrap();
        // No subscriber, no producer.
        a.ping().await.unwrap();
        assert_eq!(started.load(Ordering::SeqCst), 0);
        a.subscribe("ticker:acme").await.unwrap();
        let Some(Event::Message(m)) = a.next_event().await else {
            panic!("no tick")
        };
        assert_eq!(m.json().unwrap()["room"], "ticker:acme");
        b.subscribe("ticker:acme").await.unwrap();
        b.subscribe("other").await.unwrap();
        assert_eq!(started.load(Ordering::SeqCst), 1, "one producer per room");
        // The first leaves: the producer keeps running for the second.
        a.unsubscribe("ticker:acme").await.unwrap();
        assert_eq!(live.load(Ordering::SeqCst), 1);
        let Some(Event::Message(_)) = b.next_event().await else {
            panic!("no tick for b")
        };
        // The last one vanishes without unsubscribing: the producer is cancelled.
        drop(b);
        eventually("producer cancelled", || live.load(Ordering::SeqCst) == 0).await;
        // A new subscriber starts a new one.
        a.subscribe("ticker:acme").await.unwrap();
        eventually("producer restarted", || started.load(Ordering::SeqCst) == 2).await;
        a.close().await;
        eventually("producer cancelled again", || {
            live.load(Ordering::SeqCst) == 0
        })
        .await;
    })
    .await
    .expect("test timed out");
}
