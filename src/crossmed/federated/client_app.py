"""The Flower ClientApp a site process runs: join (say who it is and how much data it has), train a round, validate.

A site reads only the processed folder its own site process was started with (node config `data-dir`). Replies carry
weights and aggregate statistics; errors come back as Flower errors naming the site, so the coordinator can say which
site failed and why.
"""

import json
import logging
import traceback

from flwr.app import ConfigRecord, Context, Error, Message, MessageType, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from crossmed.errors import CrossmedError
from crossmed.federated.messages import (ARRAYS, CONFIG, DATA_DIR_KEY, METRICS, SITE, SITE_KEY, UNIT_WEIGHT_KEY, WEIGHT_KEY,
                                         study_config)
from crossmed.federated.site_data import load_site_data, site_summary
from crossmed.logs import configure_logging

SITE_ERROR = 4100  # the Error code of a reply whose site could not do what was asked


class SiteApp(ClientApp):
    """crossmed's ClientApp. In a run with secure aggregation, train messages take Flower's SecAgg+ path instead (its
    mod needs the legacy client API): the site sends its masked update, the coordinator learns only the sum."""

    def __call__(self, message: Message, context: Context) -> Message:
        """Handle one message from the coordinator."""
        if message.metadata.message_type == MessageType.TRAIN and _secure(context):
            try:
                return _secure_app()(message, context)
            except Exception as err:  # noqa: BLE001
                return _failed(message, context, err)
        return super().__call__(message, context)


app = SiteApp()


def _secure(context: Context) -> bool:
    """True when the run's study config turns secure aggregation on."""
    secure = study_config(context.run_config).train.federated.get("secure_aggregation")
    return bool(secure is not None and secure.enabled)


def _secure_app():
    """Return the legacy ClientApp that runs a site's round under SecAgg+ (secaggplus_mod around a NumPyClient)."""
    from flwr.client import ClientApp as LegacyClientApp, NumPyClient
    from flwr.client.mod import secaggplus_mod

    class SecureSite(NumPyClient):
        """A site's round for SecAgg+: validate the global weights, train, reply with the update (new minus global)."""

        def __init__(self, context: Context):
            self.context = context

        def fit(self, parameters, config):
            """Return ([update], training images, statistics and validation figures) of one round."""
            import numpy as np

            from crossmed.federated.site_training import RoundOrder, round_seed
            from crossmed.federated.wire import flatten, unflatten

            trainer = _trainer(self.context)
            order = RoundOrder(int(config["server-round"]), int(config["local-epochs"]), int(config["total-epochs"]),
                               float(config.get("proximal-mu", 0.0)))
            incoming = unflatten(parameters[0], trainer.template())
            validation = trainer.validate(incoming)
            weights, stats = trainer.train_round(incoming, order)
            update = flatten(weights) - parameters[0]
            limit, largest = float(config["clipping-range"]), float(np.abs(update).max())
            if largest > limit:
                raise CrossmedError(f"an update value of {largest:.4g} lies outside train.federated.secure_aggregation."
                                    f"clipping_range ({limit}): raise it, or lower the learning rate")
            # SecAgg+ quantises by stochastic rounding with NumPy's global generator: seeded, a rerun sends the same.
            np.random.seed(round_seed(int(study_config(self.context.run_config).seed), _site(self.context), order.round_number))
            return [update], int(stats["train-images"]), {**stats, **validation}

    return LegacyClientApp(client_fn=lambda context: SecureSite(context).to_client(), mods=[secaggplus_mod])


def _trainer(context: Context):
    """Return the site's trainer for this run: the run's study config and this site's own data folder."""
    from crossmed.federated.site_training import SiteTrainer  # PyTorch and MONAI: only where weights are handled

    configure_logging("site")
    return SiteTrainer(study_config(context.run_config), _site(context), _data_dir(context))


def _data_dir(context: Context) -> str:
    return str(context.node_config[DATA_DIR_KEY])


def _site(context: Context) -> str:
    return str(context.node_config.get(SITE_KEY, "?"))


def _failed(msg: Message, context: Context, err: Exception) -> Message:
    """Return an error reply naming the site and the reason (the traceback goes to the site's own log only)."""
    reason = str(err) if isinstance(err, CrossmedError) else f"{type(err).__name__}: {err}"
    logging.getLogger("crossmed.federated.site").error("site %s: %s\n%s", _site(context), reason, traceback.format_exc())
    return Message(Error(code=SITE_ERROR, reason=f"site {_site(context)}: {reason}"), reply_to=msg)


@app.query()
def join(msg: Message, context: Context) -> Message:
    """Reply with the site's code, image counts and data recipe: the coordinator checks every expected site is there and agrees."""
    try:
        configure_logging("site")
        counts, facts = site_summary(load_site_data(_data_dir(context), _site(context)), _data_dir(context))
    except Exception as err:  # noqa: BLE001  (every failure is reported to the coordinator)
        return _failed(msg, context, err)
    return Message(RecordDict({SITE: ConfigRecord({SITE_KEY: _site(context), "data": json.dumps(facts, ensure_ascii=False)}),
                               METRICS: MetricRecord(counts)}), reply_to=msg)


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Validate the round's global weights on this site's validation split, then train them on its training split;
    reply with the new weights, the training statistics and the validation figures of the weights it was sent."""
    try:
        from crossmed.federated.site_training import RoundOrder
        from crossmed.federated.wire import from_record, to_record

        trainer = _trainer(context)
        config = msg.content[CONFIG]
        order = RoundOrder(int(config["server-round"]), int(config["local-epochs"]), int(config["total-epochs"]),
                           float(config.get("proximal-mu", 0.0)))
        incoming = from_record(msg.content[ARRAYS], trainer.template())
        validation = trainer.validate(incoming)  # the weights this round starts from: the last round's global model
        weights, stats = trainer.train_round(incoming, order)
    except Exception as err:  # noqa: BLE001
        return _failed(msg, context, err)
    return Message(RecordDict({ARRAYS: to_record(weights),
                               METRICS: MetricRecord({**stats, **validation, WEIGHT_KEY: stats["train-images"],
                                                                       UNIT_WEIGHT_KEY: 1})}), reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Validate the final global weights on this site's validation split; reply with loss, AUC and the image count."""
    try:
        from crossmed.federated.wire import from_record

        trainer = _trainer(context)
        stats = trainer.validate(from_record(msg.content[ARRAYS], trainer.template()))
    except Exception as err:  # noqa: BLE001
        return _failed(msg, context, err)
    return Message(RecordDict({METRICS: MetricRecord({**stats, WEIGHT_KEY: stats["val-images"]})}), reply_to=msg)
