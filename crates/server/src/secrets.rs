//! The encryption key against what the database holds: checked whenever a command opens the
//! database, plaintext secrets encrypted when a server starts with a key, and key rotation.
//!
//! A process whose key cannot open the secrets it would need must not run: it would sign nothing
//! and fail every delivery it claims. So a missing or wrong key stops the process at start, with a
//! message that says which; a canary sealed with the key the first time a server starts with one
//! catches a wrong key even before any other secret exists.

use anyhow::{Context, bail};
use sipsim_core::Store;
use sipsim_core::cipher::{self, CANARY_SETTING, SecretCipher, check_key, plan};

/// How often a rewrite is planned again when secrets changed between reading and writing them.
const REWRITE_TRIES: usize = 5;

/// Refuses a key that cannot open every encrypted secret the database holds, or the lack of one
/// where there are such secrets; with a key, writes the canary if there is none yet.
pub async fn check_database_key(
    store: &dyn Store,
    cipher: Option<&SecretCipher>,
) -> anyhow::Result<()> {
    let secrets = store
        .stored_secrets()
        .await
        .context("cannot read the stored secrets to check the encryption key")?;
    check_key(&secrets, cipher)?;
    if let Some(cipher) = cipher {
        let stored = store
            .setting_or_insert(CANARY_SETTING, &cipher::canary(cipher))
            .await
            .context("cannot store the encryption key's canary")?;
        // Another process may have written its own canary meanwhile: it must open too.
        cipher::unseal(Some(cipher), &stored, CANARY_SETTING)
            .map_err(|_| anyhow::anyhow!(cipher::KeyProblem::Wrong { unreadable: 1, sealed: 1 }))?;
    }
    Ok(())
}

/// Encrypts with `cipher` every secret stored in clear (written before a key was configured), in
/// one transaction; returns how many.
pub async fn encrypt_plaintext(store: &dyn Store, cipher: &SecretCipher) -> anyhow::Result<usize> {
    rewrite(store, |secrets| plan(secrets, Some(cipher), cipher, false)).await
}

/// Re-encrypts every secret under `to`, reading them with `from` (the current key ring; `None` if
/// nothing is encrypted yet), in one transaction; returns how many. Afterwards every secret opens
/// with `to` alone.
pub async fn rotate(
    store: &dyn Store,
    from: Option<&SecretCipher>,
    to: &SecretCipher,
) -> anyhow::Result<usize> {
    let rewritten = rewrite(store, |secrets| plan(secrets, from, to, true)).await?;
    // Where nothing was encrypted before, there was no canary to rotate: write one for the new key.
    check_database_key(store, Some(to))
        .await
        .context("after rotating, a secret does not open with the new key (a node still writing with the old key alone?)")?;
    Ok(rewritten)
}

/// Plans rewrites from the stored secrets and writes them all or none, planning again if any had
/// changed meanwhile (a regeneration, a new integration).
async fn rewrite(
    store: &dyn Store,
    planner: impl Fn(&[cipher::StoredSecret]) -> Result<Vec<cipher::SecretRewrite>, cipher::KeyProblem>,
) -> anyhow::Result<usize> {
    for _ in 0..REWRITE_TRIES {
        let secrets = store.stored_secrets().await.context("cannot read the stored secrets")?;
        let rewrites = planner(&secrets)?;
        if rewrites.is_empty() {
            return Ok(0);
        }
        if store
            .rewrite_secrets(&rewrites)
            .await
            .context("cannot write the re-encrypted secrets")?
        {
            return Ok(rewrites.len());
        }
    }
    bail!("the stored secrets kept changing while they were being re-encrypted; try again")
}
