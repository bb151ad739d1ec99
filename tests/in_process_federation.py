"""A federation computed in one process: crossmed's coordinator and its real ClientApp, messages handed over in memory.

`python tests/in_process_federation.py CONFIG WORK` cuts the config's processed data into site folders under WORK,
runs every round and writes WORK/coordinator/result.pt as the real coordinator does. Started with the portable CPU
environment (crossmed.reproducibility.PORTABLE_ENV), it is the reference that a federation of real processes (a
SuperLink, SuperNodes, a ClientApp process per message) must equal bit for bit: the processes add transport, nothing else.
"""

import sys
from pathlib import Path

from omegaconf import OmegaConf


class InProcessGrid:
    """Flower's Grid as the coordinator uses it, each message answered by crossmed's ClientApp for that node's site."""

    def __init__(self, folders: dict[str, Path], run_config: dict):
        from flwr.app import Context, RecordDict
        from flwr.supercore.task_identity import TaskIdentity

        from crossmed.federated.messages import DATA_DIR_KEY, SITE_KEY

        TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1  # what a ServerApp process has set
        self.contexts = {100 + i: Context(run_id=1, node_id=100 + i, node_config={SITE_KEY: site, DATA_DIR_KEY: str(folder)},
                                          state=RecordDict(), run_config=run_config)
                         for i, (site, folder) in enumerate(folders.items())}

    def get_node_ids(self) -> list[int]:
        """Return one node per site."""
        return list(self.contexts)

    def push_messages(self, messages) -> list[str]:
        """Answer each message with the ClientApp's reply for its node at once; return the messages' IDs."""
        from crossmed.federated.client_app import app

        return [answer_on(self, message, lambda m: app(m, self.contexts[m.metadata.dst_node_id])) for message in messages]

    def pull_messages(self, message_ids) -> list:
        """Return (once) the replies to the messages `message_ids` names."""
        return pull_from(self, message_ids)


def answer_on(grid, message, answer) -> str:
    """Give `message` an ID as Flower's grid does, keep answer(message) as its reply on `grid`; return the ID."""
    grid.replies = getattr(grid, "replies", [])
    message.metadata.__dict__["_message_id"] = f"message-{len(grid.replies) + 1}"
    grid.replies.append(answer(message))
    return message.metadata.message_id


def pull_from(grid, message_ids) -> list:
    """Remove from `grid` and return the replies to the messages `message_ids` names."""
    wanted = set(message_ids)
    arrived = [reply for reply in grid.replies if reply.metadata.reply_to_message_id in wanted]
    grid.replies = [reply for reply in grid.replies if reply.metadata.reply_to_message_id not in wanted]
    return arrived


def run(config: str | Path, work: str | Path) -> Path:
    """Run the federation `config` plans in this process under `work`; return the result file."""
    from crossmed.federated.coordinator import RESULT_FILE, Coordinator
    from crossmed.federated.messages import STUDY_CONFIG_KEY, WORK_DIR_KEY, encode_study_config, study_config
    from crossmed.federated.plan import FederationPlan
    from crossmed.federated.site_data import write_site_folders
    from crossmed.reproducibility import in_effect

    cfg, work = OmegaConf.load(config), Path(work)
    folders = write_site_folders(cfg.paths.processed, work / "sites", FederationPlan.from_config(cfg).sites)
    run_config = {STUDY_CONFIG_KEY: encode_study_config(cfg), WORK_DIR_KEY: str(work / "coordinator")}
    cfg = study_config(run_config)  # what the ServerApp reads: the config after its trip through JSON
    in_effect(cfg)
    Coordinator(cfg, work / "coordinator").run(InProcessGrid(folders, run_config))
    return work / "coordinator" / RESULT_FILE


if __name__ == "__main__":
    print(run(*sys.argv[1:3]))
