//! Smoke test: one process creates, writes, reads back through the federation.
use juxmem::layout::{Dist, Layout};
use juxmem::service::protocol::VersionReq;
use juxmem::{ArrayOptions, Federation, Solo};

fn main() -> juxmem::Result<()> {
    let fed = Federation::from_env()?;
    let layout = Layout::one_d(1000, Dist::Block, 1)?;
    let mut a = fed.create::<f64, _>(
        &Solo,
        "smoke/x",
        ArrayOptions::new(layout.clone()).redundancy(2, 1),
    )?;
    a.acquire()?;
    for (i, x) in a.local_mut()?.iter_mut().enumerate() {
        *x = i as f64;
    }
    let v = a.release()?;
    println!("released version {v}");
    let mut b = fed.open::<f64, _>(&Solo, "smoke/x", Layout::one_d(1000, Dist::Cyclic, 1)?)?;
    b.acquire_read(VersionReq::AtLeast(v))?;
    assert_eq!(b.local()?[999], 999.0);
    let mut buf = vec![0.0; 10];
    b.get(&[500], &[510], &mut buf)?;
    assert_eq!(buf[3], 503.0);
    b.release_read()?;
    println!(
        "names: {:?}",
        fed.list("smoke/")?
            .iter()
            .map(|n| n.name.clone())
            .collect::<Vec<_>>()
    );
    println!("SMOKE ok");
    Ok(())
}
