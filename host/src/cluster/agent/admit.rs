//! What an agent lets through to Docker from a decider's zero command: a
//! container id that is a full Docker id (64 lowercase hex digits) and one
//! of the containers the decider asked this node to track. Anything else
//! (a forged or garbled id, another node's container, a name Docker would
//! resolve by prefix) is refused here, before Docker sees it.

use crate::cluster::wire::ZeroCommand;
use crate::model::Tracked;

/// `Ok` if `command` may run on this node, given the tracking set the
/// decider last sent (`None`: none yet, so nothing is this node's).
pub(super) fn admit(command: &ZeroCommand, tracking: Option<&[Tracked]>) -> Result<(), String> {
    let (what, id) = match command {
        ZeroCommand::Freeze { container_id } => ("freeze", container_id),
        ZeroCommand::Thaw { container_id } => ("thaw", container_id),
        ZeroCommand::Recover { container_id } => ("recover", container_id),
    };
    if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        let shown: String = id.chars().take(80).collect();
        return Err(format!("{what} of {shown:?}: not a full container id (64 hex digits)"));
    }
    if !tracking.is_some_and(|set| set.iter().any(|t| t.container_id == *id)) {
        return Err(format!("{what} of {id}: not a container this node tracks"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracked(id: &str) -> Tracked {
        Tracked { container_id: id.to_string(), thresholds: Default::default() }
    }

    #[test]
    fn only_full_ids_of_tracked_containers_reach_docker() {
        let mine = "a".repeat(64);
        let other = format!("{}1", "b".repeat(63));
        let set = vec![tracked(&mine)];
        let thaw = |id: &str| ZeroCommand::Thaw { container_id: id.to_string() };
        let recover = |id: &str| ZeroCommand::Recover { container_id: id.to_string() };
        assert_eq!(admit(&thaw(&mine), Some(&set)), Ok(()));
        assert_eq!(admit(&recover(&mine), Some(&set)), Ok(()));
        assert_eq!(admit(&ZeroCommand::Freeze { container_id: mine.clone() }, Some(&set)), Ok(()));
        // Well formed, but another node's (or no one's) container.
        let err = admit(&thaw(&other), Some(&set)).expect_err("untracked");
        assert!(err.contains("not a container this node tracks"), "{err}");
        assert!(admit(&recover(&other), Some(&set)).is_err());
        assert!(admit(&thaw(&mine), None).is_err(), "no tracking set yet: nothing is this node's");
        // Crafted ids: a prefix Docker would resolve, a name, upper case,
        // path or query characters, the right length with a bad byte.
        for crafted in [
            &mine[..12],
            "web.1.abcdef",
            mine.to_uppercase().as_str(),
            "../../containers/json?all=1",
            format!("{}/", &mine[..63]).as_str(),
            format!("{mine}{mine}").as_str(),
            "",
        ] {
            let set = vec![tracked(crafted)];
            let err = admit(&thaw(crafted), Some(&set)).expect_err(crafted);
            assert!(err.contains("not a full container id"), "{err}");
            assert!(!err.contains('\n') && err.len() < 200, "one short line: {err}");
        }
    }
}
