"""`crossmed tracking ...`: the command-line face of the shared set-up (up, down, status, user, grant, remote)."""

import json
from pathlib import Path

from crossmed.errors import CrossmedError
from crossmed.shared_tracking.home import HOME_ENV, TrackingHome, default_home

DESCRIPTION = ("A study team's shared record on this machine, for trials and tests: PostgreSQL (runs and accounts), "
               "an S3 store (moto's server, or --s3-endpoint) for artifacts and the DVC remote, and an MLflow tracking "
               "server with basic auth on 127.0.0.1, where nobody reads what they were not granted. State, logs and "
               f"secrets (owner-only) live in --home (default ${HOME_ENV}, else ~/.local/state/crossmed/tracking).")


def _home(args) -> TrackingHome:
    return TrackingHome(Path(args.home).expanduser() if args.home else default_home())


def _running_uri(home: TrackingHome) -> str:
    """Return the MLflow address of a set-up that is up, or say how to start it."""
    from crossmed.shared_tracking.mlflow_server import healthy

    uri = home.load_state().get("tracking_uri")
    if not uri or not healthy(uri):
        raise CrossmedError(f"the shared MLflow server of {home.root} is not running: crossmed tracking up")
    return uri


def _up(args) -> int:
    from crossmed.shared_tracking import stack
    from crossmed.shared_tracking.mlflow_server import ADMIN

    home = _home(args)
    state = stack.up(home, stack.Options(mlflow_port=args.port, s3_endpoint=args.s3_endpoint, bucket=args.bucket))
    print(f"MLflow  {state['tracking_uri']}  (user '{ADMIN}', password in {home.secrets / 'admin-password'})")
    print(f"started in {state['startup']['total_s']:.1f} s; next: crossmed tracking user add <SITE>, "
          "crossmed tracking grant ..., crossmed tracking remote")
    return 0


def _down(args) -> int:
    from crossmed.shared_tracking import stack

    stack.down(_home(args), delete_data=args.delete_data)
    return 0


def _status(args) -> int:
    from crossmed.shared_tracking import stack

    report = stack.status(_home(args))
    if args.json:
        print(json.dumps(report, indent=2))
    elif not report["servers"]:
        print(f"no shared tracking set-up in {report['home']} (crossmed tracking up)")
    else:
        for name, server in report["servers"].items():
            running = {True: "running", False: "stopped", None: "not managed here"}[server.get("running")]
            print(f"{name:9} {running:17} {server['address']}  " + "  ".join(
                f"{key} {value}" for key, value in server.items() if key not in ("address", "running") and value))
    return 0 if all(s.get("running", True) for s in report["servers"].values()) and report["servers"] else 1


def _user_add(args) -> int:
    from crossmed.shared_tracking.accounts import add_user

    home = _home(args)
    path = add_user(home, _running_uri(home), args.name)
    print(f"user '{args.name}' created; its address and password are in {path} (owner-only): give that file to the "
          f"site's team, who run `. {path.name}` before `dvc exp run`. It can see nothing until granted.")
    return 0


def _grant(args) -> int:
    from crossmed.shared_tracking.accounts import grant

    home = _home(args)
    resource = grant(home, _running_uri(home), args.user, args.permission, experiment=args.experiment,
                     model=args.model, create=args.create)
    what = f"experiment '{args.experiment}' (id {resource})" if args.experiment else f"registered model '{args.model}'"
    print(f"{args.user}: {args.permission} on {what}")
    return 0


def _remote(args) -> int:
    from crossmed.shared_tracking import stack
    from crossmed.shared_tracking.dvc_remote import configure

    home = _home(args)
    state = home.load_state()
    if not state:
        raise CrossmedError(f"no shared tracking set-up in {home.root}: crossmed tracking up")
    store = stack.s3_store(home, state)
    managed = state["s3"]["managed"]  # moto's generated keys go in the file; a real store's stay in your environment
    path = configure(args.project, store, args.name, with_keys=managed)
    keys = "with its keys" if managed else "without keys (DVC reads AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a profile)"
    print(f"DVC remote '{args.name}' = {store.dvc_url} at {store.endpoint_url}, {keys}, written to {path} "
          "(owner-only, not committed): dvc push / dvc pull")
    return 0


def add_parser(sub) -> None:
    """Add `crossmed tracking` and its sub-commands to the `crossmed` parser."""
    from crossmed.shared_tracking.accounts import PERMISSIONS
    from crossmed.shared_tracking.stack import BUCKET, DEFAULT_MLFLOW_PORT

    tracking = sub.add_parser("tracking", help="the team's shared record: PostgreSQL + S3 + MLflow with accounts",
                              description=DESCRIPTION)
    tracking.add_argument("--home", metavar="DIR", help=f"the set-up's folder (default ${HOME_ENV}, else "
                                                        "~/.local/state/crossmed/tracking)")
    commands = tracking.add_subparsers(dest="tracking_command", required=True,
                                       help="up, down, status: the servers; user, grant: accounts; remote: DVC")
    up = commands.add_parser("up", help="start the three servers (or those not running); safe to repeat",
                             description="Start PostgreSQL, the S3 store and MLflow (basic auth, no permission by "
                                         "default) on 127.0.0.1. The first start creates the databases, the bucket and "
                                         "the admin account (its password is written to secrets/admin-password, never "
                                         "printed). With moto, the bucket lives in memory: `down` saves it to the home "
                                         "and `up` puts it back.")
    up.add_argument("--port", type=int, default=DEFAULT_MLFLOW_PORT, help=f"MLflow's port (default {DEFAULT_MLFLOW_PORT}; 0: any "
                                                                          "free port; kept after the first start)")
    up.add_argument("--s3-endpoint", metavar="URL", help="use this S3 store (MinIO, a cloud bucket) instead of moto; "
                                                         "its keys from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY")
    up.add_argument("--bucket", default=BUCKET, help=f"bucket for artifacts (mlartifacts/) and DVC (dvc/) (default {BUCKET})")
    up.set_defaults(handler=_up)
    down = commands.add_parser("down", help="stop the servers; nothing is left running",
                               description="Stop MLflow, save moto's bucket to the home, stop moto and PostgreSQL. "
                                           "Runs, accounts and artifacts come back with the next `up`.")
    down.add_argument("--delete-data", action="store_true", help="also delete the databases, bucket copy and secrets")
    down.set_defaults(handler=_down)
    status = commands.add_parser("status", help="what runs where (exit 1 when a server is down)")
    status.add_argument("--json", action="store_true", help="as JSON")
    status.set_defaults(handler=_status)
    user = commands.add_parser("user", help="site accounts").add_subparsers(dest="user_command", required=True,
                                                                          help="add: a new user")
    user_add = user.add_parser("add", help="create a user with a random password, written to an owner-only file")
    user_add.add_argument("name", help="the user, e.g. the site code (KR)")
    user_add.set_defaults(handler=_user_add)
    grant = commands.add_parser("grant", help="give a user a permission on an experiment or a registered model",
                                description="READ: see runs, artifacts and models; EDIT: also log runs; MANAGE: also "
                                            "grant and delete. A user who creates an experiment or model manages it.")
    grant.add_argument("user", help="the user (crossmed tracking user add)")
    grant.add_argument("permission", choices=PERMISSIONS, help="what the user may do there")
    target = grant.add_mutually_exclusive_group(required=True)
    target.add_argument("--experiment", metavar="NAME", help="an experiment (the study's mlflow.experiment_name)")
    target.add_argument("--model", metavar="NAME", help="a registered model")
    grant.add_argument("--create", action="store_true", help="create the experiment if it does not exist")
    grant.set_defaults(handler=_grant)
    remote = commands.add_parser("remote", help="make the S3 store this project's DVC remote (.dvc/config.local)")
    remote.add_argument("--project", default=".", metavar="DIR", help="the DVC project (default .)")
    remote.add_argument("--name", default="shared", help="the remote's name (default shared)")
    remote.set_defaults(handler=_remote)
