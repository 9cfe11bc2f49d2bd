//! ImageLocality: a node holding the task's image scores higher, by size and spread, and
//! never over a constraint or fit.

use std::collections::BTreeMap;

use kiln_scheduler::{NodeId, Options, Pool, Strategy, image_key};

use crate::support::{all, ask, node};

const MI: u64 = 1 << 20;

fn with_image(mut n: kiln_scheduler::Node, image: &str, size: u64) -> kiln_scheduler::Node {
    n.images.insert(image_key(image), size);
    n
}

#[test]
fn image_keys_are_docker_s_resolution_of_short_names() {
    assert_eq!(image_key("busybox"), "busybox:latest");
    assert_eq!(image_key("docker.io/library/busybox:1.36"), "busybox:1.36");
    assert_eq!(image_key("index.docker.io/user/app"), "user/app:latest");
    assert_eq!(image_key("127.0.0.1:7171/shop/web"), "127.0.0.1:7171/shop/web:latest");
    assert_eq!(image_key("127.0.0.1:7171/shop/web:2"), "127.0.0.1:7171/shop/web:2");
    assert_eq!(
        image_key("127.0.0.1:7171/shop/web:2@sha256:ab"),
        "127.0.0.1:7171/shop/web@sha256:ab"
    );
    assert_eq!(image_key("library/busybox@sha256:ab"), "busybox@sha256:ab");
}

#[test]
fn the_node_holding_the_image_wins_when_both_fit() {
    // Bin-packing alone picks the fuller node `b`; `a` holds the image.
    let pool = Pool::with_nodes(
        Options::default(),
        [with_image(node("a", 8, 16, &[]), "busybox", 2 * MI), node("b", 4, 16, &[])],
    );
    let mut t = ask("t", "g", 1, 1);
    assert_eq!(pool.place(&t).unwrap().node, NodeId::from("b"));
    t.image = Some(image_key("busybox:latest"));
    assert_eq!(pool.place(&t).unwrap().node, NodeId::from("a"));
    // An image nobody holds changes nothing.
    t.image = Some(image_key("alpine"));
    assert_eq!(pool.place(&t).unwrap().node, NodeId::from("b"));
}

#[test]
fn the_image_never_overrides_a_constraint_or_fit() {
    let pool = Pool::with_nodes(
        Options::default(),
        [
            with_image(node("a", 8, 16, &[("city", "sz")]), "app:1", 900 * MI),
            node("b", 8, 16, &[("city", "gz")]),
        ],
    );
    let mut t = ask("t", "g", 1, 1);
    t.image = Some(image_key("app:1"));
    t.constraints = all(&[("city", "LIKE", Some("gz"))]);
    assert_eq!(pool.place(&t).unwrap().node, NodeId::from("b"));
    let mut big = ask("big", "g", 1, 32);
    big.image = Some(image_key("app:1"));
    let u = pool.place(&big).unwrap_err();
    assert_eq!(u.nodes, 2);
}

#[test]
fn a_bigger_image_outweighs_a_smaller_one_and_a_rarer_one_a_common_one() {
    // `small` holds a small copy, `big` a big one of differently sized tags; spread equal.
    let pool = Pool::with_nodes(
        Options::default(),
        [
            with_image(node("small", 8, 16, &[]), "app:1", 10 * MI),
            with_image(node("big", 8, 16, &[]), "app:1", 800 * MI),
        ],
    );
    let mut t = ask("t", "g", 1, 1);
    t.image = Some(image_key("app:1"));
    assert_eq!(pool.place(&t).unwrap().node, NodeId::from("big"));

    // An image on every node scores each the same: bin-pack decides again.
    let pool = Pool::with_nodes(
        Options::default(),
        [
            with_image(node("roomy", 8, 16, &[]), "app:1", 500 * MI),
            with_image(node("full", 4, 16, &[]), "app:1", 500 * MI),
        ],
    );
    assert_eq!(pool.place(&t).unwrap().node, NodeId::from("full"));
}

#[test]
fn images_change_without_changing_the_node_version() {
    let mut pool =
        Pool::with_nodes(Options::default(), [node("a", 8, 16, &[]), node("b", 4, 16, &[])]);
    let mut t = ask("t", "g", 1, 1);
    t.image = Some(image_key("busybox"));
    let before = pool.place(&t).unwrap();
    assert_eq!(before.node, NodeId::from("b"));
    assert!(pool.set_images(&NodeId::from("a"), BTreeMap::from([(image_key("busybox"), 2 * MI)])));
    assert_eq!(pool.image_nodes("busybox:latest"), 1);
    let mut t2 = ask("t2", "g", 1, 1);
    t2.image = Some(image_key("busybox"));
    assert_eq!(pool.place(&t2).unwrap().node, NodeId::from("a"));
    // The placement made before still commits: images are no part of fit.
    pool.commit(&t, &before).unwrap();
    // The same through a re-registration that only lists other images.
    let mut again = node("a", 8, 16, &[]);
    again.images.insert(image_key("alpine"), MI);
    let v = pool.nodes().find(|u| u.node.id.0 == "a").unwrap().version;
    assert_eq!(pool.upsert_node(again), v);
    assert_eq!(pool.image_nodes("busybox:latest"), 0);
    assert_eq!(pool.place(&t2).unwrap().node, NodeId::from("b"), "bin-pack alone");
    pool.remove_node(&NodeId::from("a"));
    assert_eq!(pool.image_nodes("alpine:latest"), 0);
}

#[test]
fn nodes_with_the_image_are_scored_past_the_score_limit() {
    // Twenty equal nodes come first on the bin-pack walk; the last one holds the image.
    let mut nodes: Vec<_> = (0..20).map(|i| node(&format!("n{i:02}"), 4, 16, &[])).collect();
    nodes.push(with_image(node("last", 4, 16, &[]), "app:1", 300 * MI));
    let pool = Pool::with_nodes(Options { score_limit: 4 }, nodes);
    let mut t = ask("t", "g", 1, 1);
    t.strategy = Strategy::BinPack;
    t.image = Some(image_key("app:1"));
    assert_eq!(pool.place(&t).unwrap().node, NodeId::from("last"));
}

proptest::proptest! {
    /// Over random pools: whether a task is placed never depends on the images nodes hold,
    /// and the node chosen always fits it (and its constraints).
    #[test]
    fn images_never_decide_whether_a_task_fits(
        nodes in proptest::collection::vec((1u64..9, 1u64..17, 0u8..4, proptest::bool::ANY), 1..8),
        cores in 1u64..9,
        mem in 1u64..17,
        rack in proptest::option::of(0u8..4),
    ) {
        let pool = Pool::with_nodes(
            Options::default(),
            nodes.iter().enumerate().map(|(i, (c, m, r, has))| {
                let n = node(&format!("n{i}"), *c, *m, &[("rack", &format!("r{r}"))]);
                if *has { with_image(n, "app:1", 300 * MI) } else { n }
            }),
        );
        let mut plain = ask("t", "g", cores, mem);
        if let Some(r) = rack {
            plain.constraints = all(&[("rack", "LIKE", Some(&format!("r{r}")))]);
        }
        let mut with = plain.clone();
        with.image = Some(image_key("app:1"));
        let (a, b) = (pool.place(&plain), pool.place(&with));
        proptest::prop_assert_eq!(a.is_ok(), b.is_ok());
        if let Ok(p) = b {
            proptest::prop_assert_eq!(pool.why_not(&with, &p.node), None);
        }
    }
}
