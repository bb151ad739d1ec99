"""The `crossmed` command: de-identify, keygen, params.yaml, sweeps, predict, validate and serve an export, bundle check, MLflow UI, a federation site, the shared tracking set-up."""

import argparse
import json
import os
import secrets
import sys
from pathlib import Path

from crossmed import __version__
from crossmed.errors import CrossmedError
from crossmed.logs import configure_logging

EXIT_USAGE, EXIT_REJECTED = 2, 3


def _deidentify(args) -> int:
    from crossmed.deid.keys import load_key
    from crossmed.deid.profile import load_profile
    from crossmed.deid.settings import DeidSettings
    from crossmed.deid.tree import deidentify_tree
    from crossmed.limits import InputLimits

    limits = InputLimits.from_megabytes(_positive(args.max_file_mb, "--max-file-mb"),
                                        _positive(args.max_decoded_mb, "--max-decoded-mb"))
    settings = DeidSettings(load_profile(args.option), load_key(args.key_file), args.patient_prefix,
                            args.max_date_shift_days, args.allow_burned_in, args.workers, limits)
    summary = deidentify_tree(args.src, args.dst, settings, site_records=args.site_records, mapping_out=args.mapping_out)
    print(json.dumps({**summary.as_dict(), "site_records": str(args.site_records)}, indent=2))
    return EXIT_REJECTED if summary.rejected else 0


def _positive(value: float, option: str) -> float:
    if not value > 0:
        raise CrossmedError(f"{option} must be positive (got {value})")
    return value


def _deidentify_table(args) -> int:
    from crossmed.deid.keys import load_key
    from crossmed.deid.pseudonyms import Pseudonymizer
    from crossmed.deid.tabular import deidentify_table
    from crossmed.site_codes import check_patient_prefix

    pseudonyms = Pseudonymizer(load_key(args.key_file), check_patient_prefix(args.patient_prefix, "--patient-prefix"),
                               args.max_date_shift_days)
    rows = deidentify_table(args.src, args.dst, pseudonyms, args.id_column, tuple(args.keep_column), tuple(args.name_column),
                            args.age_column, uid_columns=tuple(args.uid_column), date_columns=tuple(args.date_column))
    print(json.dumps({"rows": rows, "written": str(args.dst)}))
    return 0


def _keygen(args) -> int:
    path = Path(args.key_file)
    if path.exists():
        raise CrossmedError(f"{path}: exists; a site key is never overwritten")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(secrets.token_hex(32) + "\n")
    print(f"wrote a new 256-bit key to {path}; keep it on site and back it up: without it pseudonyms cannot be reproduced")
    return 0


def _params(args) -> int:
    from crossmed.params_file import params_differences, write_params

    if args.check:
        differences = params_differences(args.path, args.conf_dir)
        if differences:
            print(f"{args.path} differs from the default composition of {args.conf_dir}/ at: {', '.join(differences)}")
            print("run `crossmed params` to rewrite it")
            return 1
        print(f"{args.path} agrees with {args.conf_dir}/")
        return 0
    write_params(args.path, args.conf_dir)
    print(f"wrote {args.path} from {args.conf_dir}/")
    return 0


def _sweep(args) -> int:
    from crossmed.sweeps import draw_points, queue_commands, queue_points

    commands = queue_commands(args.name, draw_points(args.spec, args.trials, args.seed), args.set)
    for command in commands:
        print(" ".join(f"'{a}'" if any(c in a for c in "()[]{}, ") else a for a in command))
    if not args.dry_run:
        queue_points(commands)
        print(f"queued {len(commands)} experiments {args.name}-1 ... {args.name}-{len(commands)}; run them with `dvc queue start`")
    return 0


def _predict(args) -> int:
    from crossmed.inference.inputs import expand_inputs, model_description_path

    model_description_path(args.model)  # arguments first: a wrong path answers before PyTorch loads
    entries = expand_inputs(args.files)
    if all(reason is not None for _, reason in entries):
        for path, reason in entries:
            print(json.dumps({"file": str(path), "error": reason}))
        return EXIT_USAGE
    from crossmed.inference.exported import ExportedModel
    from crossmed.inference.predict import predict_each

    model = ExportedModel.load(args.model, args.runtime)
    failed, refused = 0, 0
    for result in predict_each(model, entries, args.saliency, allow_phi=False):
        print(json.dumps(result, allow_nan=False), flush=True)  # NaN would be invalid JSON; inputs with NaN are refused
        failed += "error" in result
        refused += result.get("refused") == "phi"
    return EXIT_REJECTED if refused else EXIT_USAGE if failed else 0


def _validate(args) -> int:
    from crossmed.inference.inputs import model_description_path
    from crossmed.site_codes import check_site_code

    model_description_path(args.model)  # arguments first: a wrong path answers before PyTorch loads
    site = check_site_code(args.site, "--site")
    from crossmed.evaluation.bootstrap import BootstrapSettings
    from crossmed.inference.site_validation import SiteValidation, validate_site

    if args.resamples < 1 or args.min_patients < 1 or not 0 < args.confidence < 1:
        raise CrossmedError("--resamples and --min-patients must be at least 1 and --confidence between 0 and 1")
    how = SiteValidation(BootstrapSettings(args.resamples, args.seed, args.confidence, args.min_per_class), args.runtime,
                         args.min_patients, args.all_rows)
    report = validate_site(args.model, args.data, site, args.out, how)
    print(json.dumps({"site": site, "written": str(Path(args.out) / "site_report.json"),
                      "sets": {name: {"images": part["images"], "auc": part["metrics"].get("auc", {}).get("value")}
                               for name, part in report["sets"].items()}}))
    return 0


def _serve(args) -> int:
    from crossmed.inference.serving import serve

    serve(args.model, args.host, args.port, _positive(args.max_request_mb, "--max-request-mb"))
    return 0


def _verify_bundle(args) -> int:
    from crossmed.export.bundle_check import verify_bundle

    print(f"{verify_bundle(args.bundle, args.schema)}: metadata is verified with no error (MONAI verify_metadata)")
    return 0


def _ui(args) -> int:
    from crossmed.errors import InputError
    from crossmed.mlflow_store import ARTIFACT_DIR_NAME, relocate

    database = Path(args.store).resolve()
    if not database.is_file():
        raise InputError(database, "no MLflow store here yet; run the study (dvc repro) first")
    uri = f"sqlite:///{database}"
    relocate(uri)  # a copied or moved checkout shows its own artifacts
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--artifacts-destination",
               str(database.parent / ARTIFACT_DIR_NAME), "--host", args.host, "--port", str(args.port)]
    print(f"MLflow UI on http://{args.host}:{args.port} (store {database}); Ctrl-C stops it", file=sys.stderr)
    sys.stderr.flush()
    os.execv(sys.executable, command)
    return 0  # not reached


def _site_key(args) -> int:
    from crossmed.federated.security import make_site_key
    from crossmed.site_codes import check_site_code

    site = check_site_code(args.site, "--site")
    private = Path(args.out) / f"{site}.key"
    for path in (private, private.with_name(private.name + ".pub")):
        if path.exists():
            raise CrossmedError(f"{path}: exists; a site's key is never overwritten")
    private.parent.mkdir(parents=True, exist_ok=True)
    make_site_key(args.out, site)
    print(f"wrote {private} (owner-only: it never leaves this machine) and {private}.pub: send the .pub file to the "
          "coordinator's operator, who registers it (flwr supernode register)")
    return 0


def _site_join(args) -> int:
    from crossmed.federated.site_process import join_federation
    from crossmed.site_codes import check_site_code

    site = check_site_code(args.site, "--site")
    if args.insecure == bool(args.ca):
        raise CrossmedError("give --ca (the CA certificate the coordinator's certificate is signed by), or --insecure for "
                            "plain HTTP on a trusted network")
    return join_federation(site, args.data, args.coordinator, args.ca, args.key, args.home or Path(".crossmed-site") / site,
                           portable_cpu=args.cpu == "portable")


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the `crossmed` command."""
    from crossmed.deid.profile import OPTIONS
    from crossmed.inference.serving import DEFAULT_MAX_REQUEST_MB

    parser = argparse.ArgumentParser(prog="crossmed", description=__doc__)
    parser.add_argument("--version", action="version", version=f"crossmed {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    deid = sub.add_parser("deidentify", help="de-identify a DICOM tree (DICOM PS3.15 Annex E Basic Profile)",
                          description="De-identify every DICOM file under SRC_DIR into DST_DIR/<patient>/<study>/<instance>.dcm "
                                      "with keyed pseudonyms. Attributes Table E.1-1 lists follow the profile; others are kept "
                                      "only when known to be safe. Pixels are decoded and re-written (no codec metadata); the "
                                      "preamble and file meta are written anew. DST_DIR gets audit.csv and rejected.csv, which "
                                      "name no source file: refused files appear under a pseudonymous reference, and the "
                                      "site-only record in --site-records maps it back to the source path. DST_DIR must be "
                                      "empty or new, or an earlier output of the same key and options (files are added). "
                                      "Exit 0: all files written; 3: some files refused; 2: usage error.")
    deid.add_argument("src", metavar="SRC_DIR", help="folder of DICOM files; never modified")
    deid.add_argument("dst", metavar="DST_DIR", help="output folder; must not lie inside SRC_DIR")
    deid.add_argument("--key-file", help="file holding the site key (else $CROSSMED_DEID_KEY); make one with `crossmed keygen`")
    deid.add_argument("--profile", default="basic", choices=["basic"], help="confidentiality profile (default: basic)")
    deid.add_argument("--option", action="append", default=[], choices=sorted(OPTIONS),
                      help="a profile option from PS3.15 table E.1-1; repeat for several")
    deid.add_argument("--patient-prefix", default="", help="prefix of pseudonymous patient IDs, e.g. 'KR-' (letters, digits, - and _)")
    deid.add_argument("--max-date-shift-days", type=int, default=365,
                      help="dates move back 1..N days per patient (default 365; at least 1)")
    deid.add_argument("--allow-burned-in", action="store_true",
                      help="pass images that may carry burned-in text; only after a person has reviewed them")
    deid.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                      help="processes reading and de-identifying files (default: all CPUs); output is the same for any number")
    deid.add_argument("--site-records", default="crossmed-site-records", metavar="DIR",
                      help="site-only folder for the record of which source file each refused reference is "
                           "(default: ./crossmed-site-records); it names source paths: keep it on site")
    deid.add_argument("--mapping-out", help="also write the real-to-pseudonym mapping CSV here (site-only; keep it on site)")
    deid.add_argument("--max-file-mb", type=float, default=1024, help="refuse larger files (default 1024)")
    deid.add_argument("--max-decoded-mb", type=float, default=1024,
                      help="refuse files whose decoded pixels would exceed this (default 1024)")
    deid.set_defaults(handler=_deidentify)

    table = sub.add_parser("deidentify-table", help="pseudonymise a clinical CSV with the same site key",
                           description="Replace the patient ID column with the same keyed pseudonyms `deidentify` gives the "
                                       "images (use the same --patient-prefix), replace UID columns and shift date columns "
                                       "like the images, and keep only the columns named by --keep-column (their text is "
                                       "searched for the names in --name-column and for identifiers); every other column "
                                       "stays on site. Ages over 89 become 90.")
    table.add_argument("src", metavar="SRC_CSV", help="the clinical table as the site exported it (stays on site)")
    table.add_argument("dst", metavar="DST_CSV", help="where to write the pseudonymised table (fit to share)")
    table.add_argument("--key-file", help="file holding the site key (else $CROSSMED_DEID_KEY)")
    table.add_argument("--patient-prefix", default="",
                       help="prefix of pseudonymous patient IDs, the same as the images' (e.g. 'KR-')")
    table.add_argument("--id-column", default="patient_id", help="the column of real patient IDs (default patient_id)")
    table.add_argument("--keep-column", action="append", default=[], help="a column to keep (allow-list); repeat")
    table.add_argument("--name-column", action="append", default=[],
                       help="a column of patient names: searched for in the kept text, not kept; repeat")
    table.add_argument("--age-column", default="age", help="a column of ages in years: over 89 becomes 90 (default age)")
    table.add_argument("--uid-column", action="append", default=[], help="a column of DICOM UIDs to pseudonymise; repeat")
    table.add_argument("--date-column", action="append", default=[], help="a YYYY-MM-DD column to shift per patient; repeat")
    table.add_argument("--max-date-shift-days", type=int, default=365,
                       help="dates move back 1..N days per patient, as the images' with the same key (default 365)")
    table.set_defaults(handler=_deidentify_table)

    keygen = sub.add_parser("keygen", help="write a new random site key", description="Write a new 256-bit site key.")
    keygen.add_argument("key_file", help="where to write the key (refuses to overwrite)")
    keygen.set_defaults(handler=_keygen)

    params = sub.add_parser("params", help="write params.yaml from conf/ (or --check that it agrees)",
                            description="DVC composes params.yaml from conf/ only on `dvc exp run`; `dvc repro` reads the "
                                        "committed file. This writes it, or checks that it equals the default composition.")
    params.add_argument("--check", action="store_true", help="exit 1 if params.yaml differs from conf/")
    params.add_argument("--path", default="params.yaml", help="the params file DVC reads (default params.yaml)")
    params.add_argument("--conf-dir", default="conf", help="the Hydra config folder to compose (default conf)")
    params.set_defaults(handler=_params)

    sweep = sub.add_parser("sweep", help="random search: queue DVC experiments with values drawn from distributions",
                           description="Draw --trials points from the given distributions (seeded) and queue each as "
                                       "`dvc exp run --queue -n NAME-i -S key=value ...`; start them with `dvc queue start`. "
                                       "For a grid use DVC directly: dvc exp run --queue -S 'key=a,b,c'.")
    sweep.add_argument("spec", nargs="+", help="key=uniform(a,b) | key=loguniform(a,b) | key=randint(a,b) | key=choice(x,y,...)")
    sweep.add_argument("-n", "--name", required=True, help="experiment name prefix: NAME-1, NAME-2, ...")
    sweep.add_argument("--trials", type=int, default=8, help="how many points to draw (default 8)")
    sweep.add_argument("--seed", type=int, default=0, help="seed of the draw: the same seed queues the same points")
    sweep.add_argument("-S", "--set", action="append", default=[], metavar="KEY=VALUE",
                       help="a fixed override for every point, passed to dvc as -S (repeatable)")
    sweep.add_argument("--dry-run", action="store_true", help="print the dvc commands without queueing")
    sweep.set_defaults(handler=_sweep)

    predict = sub.add_parser("predict", help="predict image files with an exported model; prints one JSON line per image",
                             description="Apply the preprocessing recipe saved with the model, run it and print per image "
                                         "{file, probabilities, predicted, threshold} as JSON lines. A file that cannot be "
                                         "predicted gets {file, error} and the others go on. DICOM files must be "
                                         "de-identified (Patient Identity Removed YES, no identifying attributes): others get "
                                         "\"refused\": \"phi\". Exit 0: every file predicted; 3: a DICOM was refused; 2: an "
                                         "unusable model, or a file that could not be predicted.")
    predict.add_argument("model", metavar="MODEL", help="an export folder: models/export, its model/ folder or model.json")
    predict.add_argument("files", metavar="FILES", nargs="+",
                         help="DICOM, NIfTI, PNG/JPEG files, .npy arrays of raw pixels (one image or a stack), a MedMNIST "
                              ".npz, or folders (the image files under them)")
    predict.add_argument("--runtime", default="torchscript", choices=["torchscript", "onnx"],
                         help="which exported file runs the network (default torchscript)")
    predict.add_argument("--saliency", metavar="DIR", help="also write a Grad-CAM overlay PNG of the predicted class per image here")
    predict.set_defaults(handler=_predict)

    validate = sub.add_parser("validate", help="validate an exported model on a site's own data: a report of aggregates only",
                              description="Run the exported model at its saved threshold on one site's processed data (the "
                                          "preprocess stage's folder) and write OUT/site_report.json and site_report.md: "
                                          "metrics with patient-bootstrap intervals, counts at the threshold, calibration, "
                                          "an ROC curve on a fixed grid and subgroups. No identifier and no per-case row; "
                                          "groups and calibration bins of fewer than --min-patients are suppressed. Only "
                                          "this folder needs to leave the site; the coordinator's report stage assembles "
                                          "site reports (data/site_reports/). The site's test and external_test rows are "
                                          "validated, or all its rows with --all-rows.")
    validate.add_argument("model", metavar="MODEL", help="an export folder: models/export, its model/ folder or model.json")
    validate.add_argument("data", metavar="DATA_DIR", help="the site's processed folder (images.npy, labels.npy, manifest.csv, "
                                                          "data_card.json)")
    validate.add_argument("--site", required=True, help="the site code (rows of other sites in DATA_DIR are not used)")
    validate.add_argument("--out", required=True, metavar="DIR", help="the report folder to write (replaced whole)")
    validate.add_argument("--all-rows", action="store_true", help="validate every row of the site as one set 'site'")
    validate.add_argument("--runtime", default="torchscript", choices=["torchscript", "onnx"],
                          help="which exported file runs the network (default torchscript)")
    validate.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples of patients (default 1000)")
    validate.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0; use the study's seed to match "
                                                               "its evaluate stage)")
    validate.add_argument("--confidence", type=float, default=0.95, help="interval level (default 0.95)")
    validate.add_argument("--min-per-class", type=int, default=10,
                          help="fewer cases of a class than this: the interval is marked unreliable (default 10)")
    validate.add_argument("--min-patients", type=int, default=5,
                          help="suppress subgroups and calibration bins smaller than this (default 5)")
    validate.set_defaults(handler=_validate)

    site = sub.add_parser("site", help="a hospital's part in federated training: its key, and its site process",
                          description="Join a federation as a site: make the site's key pair once (`crossmed site key`), "
                                      "send the public key to the coordinator's operator, then run the site process "
                                      "(`crossmed site join`) on the machine that holds the site's processed data. Only "
                                      "weights and training statistics leave it.")
    site_commands = site.add_subparsers(dest="site_command", required=True, help="key: make the key pair; join: run the site process")
    site_key = site_commands.add_parser("key", help="write the site's ECDSA P-384 key pair (OpenSSH format)",
                                        description="Write OUT/<SITE>.key (owner-only) and OUT/<SITE>.key.pub; never overwrites.")
    site_key.add_argument("--site", required=True, help="the site code")
    site_key.add_argument("--out", default=".", metavar="DIR", help="folder for the key pair (default .)")
    site_key.set_defaults(handler=_site_key)
    join = site_commands.add_parser("join", help="run this site's process against a coordinator (Flower SuperNode)",
                                    description="Check the site's processed folder (a missing or broken file is named before "
                                                "anything connects), then run Flower's SuperNode for the site in the "
                                                "foreground: it waits for the coordinator's rounds, trains on this folder "
                                                "only and sends back weights and statistics. Ctrl-C stops it.")
    join.add_argument("--site", required=True, help="the site code (rows of other sites in --data are not used)")
    join.add_argument("--data", required=True, metavar="DIR", help="the site's processed folder (what its preprocess wrote)")
    join.add_argument("--coordinator", required=True, metavar="HOST:PORT", help="the coordinator's SuperLink (Fleet API)")
    join.add_argument("--ca", metavar="FILE", help="the CA certificate that signed the coordinator's certificate (TLS)")
    join.add_argument("--key", metavar="FILE", help="the site's private key (`crossmed site key`), when the coordinator "
                                                   "admits registered sites only")
    join.add_argument("--insecure", action="store_true", help="plain HTTP, no TLS (a trial on a trusted network only)")
    join.add_argument("--home", metavar="DIR", help="Flower's state folder for this site (default .crossmed-site/<SITE>)")
    join.add_argument("--cpu", choices=("portable", "native"), default="portable",
                      help="the CPU arithmetic of this site's training: portable (default, as the study's "
                           "reproducibility.cpu: the same bits on any CPU) or native (this CPU's fastest kernels)")
    join.set_defaults(handler=_site_join)

    served = sub.add_parser("serve", help="serve the exported MLflow model over HTTP (POST /invocations)",
                            description="Run MLflow's scoring server for the exported pyfunc model, with requests larger "
                                        "than --max-request-mb refused (HTTP 413) before they are read. Body: "
                                        '{"dataframe_split": {"columns": ["image"], "data": [["<base64 file bytes>"]]}}. '
                                        "A refused image (PHI, unreadable, wrong kind) answers HTTP 400 with the reason.")
    served.add_argument("model", nargs="?", default="models/export/mlflow_model", metavar="MODEL",
                        help="the MLflow model folder (default models/export/mlflow_model)")
    served.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    served.add_argument("--port", "-p", type=int, default=5001, help="port (default 5001)")
    served.add_argument("--max-request-mb", type=float, default=DEFAULT_MAX_REQUEST_MB,
                        help=f"largest request body in MiB (default {DEFAULT_MAX_REQUEST_MB})")
    served.set_defaults(handler=_serve)

    bundle = sub.add_parser("verify-bundle", help="check the exported MONAI bundle with MONAI's verify_metadata, offline",
                            description="Verify configs/metadata.json of a MONAI bundle against MONAI's bundle schema with "
                                        "MONAI's own verify_metadata. The schema is a file you give (its URL is in the "
                                        "metadata's 'schema' field): nothing is downloaded.")
    bundle.add_argument("bundle", nargs="?", default="models/export/bundle", help="the bundle (default models/export/bundle)")
    bundle.add_argument("--schema", metavar="FILE", help="MONAI's meta_schema JSON file (else $CROSSMED_BUNDLE_SCHEMA)")
    bundle.set_defaults(handler=_verify_bundle)

    ui = sub.add_parser("ui", help="open the MLflow UI on the project's store (http://127.0.0.1:5000)",
                        description="Serve the MLflow UI for the local store, after pointing its artifact locations at the "
                                    "folder beside it (so a copied or moved checkout shows its own artifacts).")
    ui.add_argument("--store", default="experiments/mlflow.db", help="the sqlite store (default experiments/mlflow.db)")
    ui.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    ui.add_argument("--port", type=int, default=5000, help="port (default 5000)")
    ui.set_defaults(handler=_ui)

    from crossmed.shared_tracking.command import add_parser as add_tracking_parser

    add_tracking_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the `crossmed` command line and return its exit code."""
    args = build_parser().parse_args(argv)
    log = configure_logging(args.command)
    try:
        return args.handler(args)
    except CrossmedError as err:
        log.error("%s", err)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
