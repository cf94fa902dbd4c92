"""Run `python -m training …` as a SageMaker training job on a GPU instance: package the source, build the
CreateTrainingJob request, submit it with boto3 (or print it with --dry-run)."""

from __future__ import annotations

import io
import json
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_INSTANCE_TYPE = "ml.g5.xlarge"
# An AWS Deep Learning Container for PyTorch training on GPU (Python 3.11); override with --image-uri.
DEFAULT_IMAGE = "763104351884.dkr.ecr.{region}.amazonaws.com/pytorch-training:2.3.0-gpu-py311-cu121-ubuntu20.04-sagemaker"
ENTRY_POINT = "sagemaker_entry.py"
# Installed by the container's training toolkit before the entry point runs; torch comes with the image.
REQUIREMENTS = ["transformers>=4.46,<5", "optimum>=1.23", "optimum-onnx>=0.1", "onnx>=1.17", "onnxruntime>=1.20",
                "tokenizers>=0.20", "numpy>=1.26", "matplotlib>=3.8", "tensorflow-cpu>=2.18", "tf2onnx>=1.16",
                "scikit-learn>=1.5", "tqdm>=4.66", "psutil>=5.9"]

# Runs inside the container: SageMaker passes hyperparameters as `--name value`; the data channel and the model
# directory come from the environment the toolkit sets.
ENTRY_SOURCE = '''"""SageMaker entry point: python -m training <command> with the job's data channel and model directory."""
import os
import sys

from training.__main__ import main

args = sys.argv[1:]
command = "all"
if "--command" in args:
    i = args.index("--command")
    command = args[i + 1]
    del args[i : i + 2]
data_dir = os.environ.get("SM_CHANNEL_TRAIN", "/opt/ml/input/data/train")
output_dir = os.environ.get("SM_MODEL_DIR", "/opt/ml/model")
sys.exit(main([command, "--data-dir", data_dir, "--output-dir", output_dir, *args]))
'''


class LaunchError(ValueError):
    """The launcher was given something SageMaker would reject; the message says what to pass."""


@dataclass
class TrainingJobSpec:
    """What one SageMaker training job needs."""

    job_name: str
    """unique per account and region; 63 characters at most"""
    role_arn: str
    """IAM role SageMaker assumes (reads the data and source, writes the output)"""
    data_s3_uri: str
    """S3 prefix holding train.txt and test.txt; mounted as the "train" channel"""
    output_s3_uri: str
    """S3 prefix where SageMaker writes model.tar.gz (the run's --output-dir)"""
    source_s3_uri: str
    """the packaged source (sourcedir.tar.gz) the container downloads"""
    image_uri: str
    """training image with Python 3.11 and torch"""
    instance_type: str = DEFAULT_INSTANCE_TYPE
    """GPU instance type"""
    instance_count: int = 1
    """instances (the training code uses one)"""
    volume_gb: int = 50
    """EBS volume per instance"""
    max_runtime_s: int = 4 * 3600
    """the job is stopped after this long"""
    hyperparameters: dict[str, str] = field(default_factory=dict)
    """`python -m training` options, `command` first (all, transformer, baselines)"""
    use_spot: bool = False
    """managed spot training (cheaper, can be interrupted; then max wait = 2 x max runtime)"""


def hyperparameters_from_args(args: Sequence[str], command: str = "all") -> dict[str, str]:
    """`["--lr", "1e-4", "--epochs", "3"]` -> {"command": "all", "lr": "1e-4", "epochs": "3"}; a flag without a value
    becomes "true". The toolkit hands them back to the entry point as `--lr 1e-4 --epochs 3`."""
    hp = {"command": command}
    args = list(args)
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--"):
            raise LaunchError(f"training option {arg!r} does not start with --; pass options as --name value")
        name, eq, value = arg[2:].partition("=")
        if not eq:
            if i + 1 < len(args) and not args[i + 1].startswith("--"):
                value, i = args[i + 1], i + 1
            else:
                value = "true"
        if name in ("data-dir", "output-dir"):
            raise LaunchError(f"--{name} is set by SageMaker (the train channel, /opt/ml/model); use --data-s3-uri/--output-s3-uri")
        hp[name] = value
        i += 1
    return hp


def package_source(out_path: str | Path, repo_root: Path = REPO_ROOT) -> Path:
    """sourcedir.tar.gz: training/, the tweetmood core as a top-level package, requirements.txt and the entry point."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)

    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        name = Path(info.name).name
        return None if name == "__pycache__" or name.endswith(".pyc") else info

    with tarfile.open(out_path, "w:gz") as tar:
        tar.add(repo_root / "training", arcname="training", filter=keep)
        tar.add(repo_root / "layers" / "core" / "tweetmood", arcname="tweetmood", filter=keep)
        for name, text in ((ENTRY_POINT, ENTRY_SOURCE), ("requirements.txt", "\n".join(REQUIREMENTS) + "\n")):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return out_path


def upload_source(tar_path: str | Path, s3_uri_prefix: str, s3_client) -> str:
    """Upload the packaged source under `s3_uri_prefix` and return its URI."""
    from training.publish import parse_s3_uri

    bucket, prefix = parse_s3_uri(s3_uri_prefix)
    key = f"{prefix}/sourcedir.tar.gz" if prefix else "sourcedir.tar.gz"
    s3_client.upload_file(str(tar_path), bucket, key)
    return f"s3://{bucket}/{key}"


def build_request(spec: TrainingJobSpec) -> dict:
    """The CreateTrainingJob request. Hyperparameter values are JSON strings, as the SageMaker SDK sends them."""
    for name in ("data_s3_uri", "output_s3_uri", "source_s3_uri"):
        if not getattr(spec, name).startswith("s3://"):
            raise LaunchError(f"{name.replace('_', '-')} must be an s3:// URI, got {getattr(spec, name)!r}")
    if not spec.role_arn.startswith("arn:"):
        raise LaunchError(f"role ARN {spec.role_arn!r} is not an ARN; pass --role arn:aws:iam::<account>:role/<name>")
    if len(spec.job_name) > 63:
        raise LaunchError(f"job name {spec.job_name!r} is longer than 63 characters")
    hyperparameters = {name: json.dumps(value) for name, value in spec.hyperparameters.items()}
    hyperparameters.update({
        "sagemaker_program": json.dumps(ENTRY_POINT),
        "sagemaker_submit_directory": json.dumps(spec.source_s3_uri),
        "sagemaker_container_log_level": "20",
    })
    stopping = {"MaxRuntimeInSeconds": int(spec.max_runtime_s)}
    if spec.use_spot:
        stopping["MaxWaitTimeInSeconds"] = 2 * int(spec.max_runtime_s)
    return {
        "TrainingJobName": spec.job_name,
        "AlgorithmSpecification": {"TrainingImage": spec.image_uri, "TrainingInputMode": "File"},
        "RoleArn": spec.role_arn,
        "InputDataConfig": [{
            "ChannelName": "train",
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": spec.data_s3_uri,
                                            "S3DataDistributionType": "FullyReplicated"}},
            "ContentType": "text/plain",
            "InputMode": "File",
        }],
        "OutputDataConfig": {"S3OutputPath": spec.output_s3_uri},
        "ResourceConfig": {"InstanceType": spec.instance_type, "InstanceCount": int(spec.instance_count),
                           "VolumeSizeInGB": int(spec.volume_gb)},
        "StoppingCondition": stopping,
        "HyperParameters": hyperparameters,
        "EnableManagedSpotTraining": bool(spec.use_spot),
        "Tags": [{"Key": "project", "Value": "tweetmood"}],
    }


def submit(request: dict, sagemaker_client) -> str:
    """Create the training job; returns its ARN."""
    return sagemaker_client.create_training_job(**request)["TrainingJobArn"]


def default_job_name(prefix: str = "tweetmood-train") -> str:
    return f"{prefix}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"


def add_arguments(parser) -> None:
    """The `python -m training sagemaker` options; training options go after `--`."""
    parser.add_argument("--role", required=True, help="IAM role ARN SageMaker assumes")
    parser.add_argument("--data-s3-uri", required=True, help="s3:// prefix with train.txt and test.txt")
    parser.add_argument("--output-s3-uri", required=True, help="s3:// prefix for the job's output (model.tar.gz)")
    parser.add_argument("--source-s3-uri", default=None, help="s3:// prefix for sourcedir.tar.gz (default: <output-s3-uri>/source/<job>)")
    parser.add_argument("--image-uri", default=None, help="training image (default: the PyTorch GPU Deep Learning Container of --region)")
    parser.add_argument("--region", default="us-east-1", help="AWS region of the job and the default image")
    parser.add_argument("--instance-type", default=DEFAULT_INSTANCE_TYPE, help=f"GPU instance type (default {DEFAULT_INSTANCE_TYPE})")
    parser.add_argument("--max-runtime-s", type=int, default=4 * 3600, help="stop the job after this many seconds")
    parser.add_argument("--volume-gb", type=int, default=50, help="EBS volume size")
    parser.add_argument("--spot", action="store_true", help="managed spot training")
    parser.add_argument("--job-name", default=None, help="default tweetmood-train-<UTC time>")
    parser.add_argument("--command", dest="job_command", default="all", choices=["all", "transformer", "baselines"],
                        help="what the job runs")
    parser.add_argument("--dry-run", action="store_true", help="print the request JSON; upload and submit nothing")
    parser.add_argument("training_args", nargs="*", help="after --: options for `python -m training <command>`, e.g. -- --epochs 3 --lr 1e-4")


def launch(ns, s3_client=None, sagemaker_client=None, out=print) -> dict:
    """Build (and unless `ns.dry_run`, upload the source and submit) the job from parsed `add_arguments` options."""
    job_name = ns.job_name or default_job_name()
    source_prefix = ns.source_s3_uri or f"{ns.output_s3_uri.rstrip('/')}/source/{job_name}"
    source_uri = f"{source_prefix.rstrip('/')}/sourcedir.tar.gz"
    spec = TrainingJobSpec(
        job_name=job_name, role_arn=ns.role, data_s3_uri=ns.data_s3_uri, output_s3_uri=ns.output_s3_uri,
        source_s3_uri=source_uri, image_uri=ns.image_uri or DEFAULT_IMAGE.format(region=ns.region),
        instance_type=ns.instance_type, volume_gb=ns.volume_gb, max_runtime_s=ns.max_runtime_s,
        hyperparameters=hyperparameters_from_args(ns.training_args, ns.job_command), use_spot=ns.spot)
    request = build_request(spec)
    if ns.dry_run:
        out(json.dumps(request, indent=2))
        return {"request": request, "submitted": False}
    import tempfile

    import boto3

    s3_client = s3_client or boto3.client("s3", region_name=ns.region)
    sagemaker_client = sagemaker_client or boto3.client("sagemaker", region_name=ns.region)
    with tempfile.TemporaryDirectory() as tmp:
        upload_source(package_source(Path(tmp) / "sourcedir.tar.gz"), source_prefix, s3_client)
    arn = submit(request, sagemaker_client)
    out(json.dumps({"TrainingJobArn": arn, "TrainingJobName": job_name, "source": source_uri,
                    "output": f"{ns.output_s3_uri.rstrip('/')}/{job_name}/output/model.tar.gz"}, indent=2))
    return {"request": request, "submitted": True, "arn": arn}
