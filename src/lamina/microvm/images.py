"""MicroVM images: Create/Get/List/Update/Delete images and image versions, builds and their logs.

Every Create or Update is a new image version, built asynchronously by the engine from the code
artifact (a zip or directory with a Dockerfile at its root). Lamina has no S3: a code artifact is
`file:///absolute/path` (a directory or a .zip on the server's host), or a zip uploaded with
`POST /lamina/v1/microvm-uploads`, which answers with such a `file://` URI.

States follow the model: the image CREATING -> CREATED | CREATE_FAILED (UPDATING -> UPDATED |
UPDATE_FAILED for later versions); a version PENDING -> IN_PROGRESS -> SUCCESSFUL | FAILED with
status ACTIVE (RunMicrovm's default is the latest SUCCESSFUL + ACTIVE version); one build per version.
Images and their built versions survive a restart; a build the restart interrupted is FAILED.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import dataclasses
import hashlib
import logging
import os
import platform
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from lamina.microvm import ids
from lamina.microvm import validation as v
from lamina.microvm.engine import BuildError, BuildRequest, BuiltImage, Engine, Hooks, ImageConfig
from lamina.microvm.errors import ApiError, conflict, invalid, not_found
from lamina.store.microvms import BuildRow, ImageRow, MicrovmRepo, VersionRow

if TYPE_CHECKING:
    from lamina.config import Settings

log = logging.getLogger("lamina.microvm")

UPLOAD_PATH = "/lamina/v1/microvm-uploads"
IMAGE = "MicrovmImage"
VERSION = "MicrovmImageVersion"
RESTART_REASON = "The Lamina server stopped during the build; update the image to build it again."


def built_to_dict(built: BuiltImage) -> dict:
    if hasattr(built, "to_dict"):
        return built.to_dict()
    data = dataclasses.asdict(built)
    data["layer_dir"] = str(built.layer_dir)
    data["hooks"]["enabled"] = sorted(built.hooks.enabled)
    return data


def built_from_dict(data: dict) -> BuiltImage:
    if hasattr(BuiltImage, "from_dict"):
        return BuiltImage.from_dict(data)
    hooks = data["hooks"]
    return BuiltImage(image_name=data["image_name"], version=data["version"], layer_dir=Path(data["layer_dir"]),
                      config=ImageConfig(**data["config"]),
                      hooks=Hooks(hooks["port"], set(hooks["enabled"]), dict(hooks["timeouts"])),
                      memory_mib=data["memory_mib"])


def _arch() -> tuple[str, str]:
    machine = platform.machine().lower()
    return ("ARM_64", "GRAVITON") if machine in ("aarch64", "arm64") else ("X86_64", "INTEL")


@dataclass(eq=False)
class ImageVersion:
    image_name: str
    version: str
    seq: int
    config: dict                       # the GetMicrovmImageVersion document minus imageArn
    built: BuiltImage | None = None
    build_id: str = ""

    @property
    def usable(self) -> bool:
        return self.built is not None and self.config["state"] == "SUCCESSFUL" and self.config["status"] == "ACTIVE"


@dataclass(eq=False)
class Image:
    name: str
    config: dict                       # imageArn, state, createdAt, updatedAt, tags, clientToken
    versions: dict[str, ImageVersion] = field(default_factory=dict)


class ImageService:
    def __init__(self, settings: Settings, repo: MicrovmRepo, engine: Engine | None, data_dir: Path) -> None:
        self.settings = settings
        self.repo = repo
        self.engine = engine
        self.root = data_dir
        self.images: dict[str, Image] = {}
        self.builds: dict[str, BuildRow] = {}
        self._tasks: set[asyncio.Task] = set()
        # (image name, version or None for all) -> the ids of its instances that are not TERMINATED;
        # set by the manager.
        self.active_instances: Callable[[str, str | None], list[str]] = lambda name, version: []

    # -- persistence ------------------------------------------------------------------------------

    def load(self) -> None:
        for row in self.repo.images():
            self.images[row.name] = Image(row.name, row.config)
        for vrow in self.repo.versions():
            image = self.images.get(vrow.image_name)
            if image is None:
                continue
            ver = ImageVersion(vrow.image_name, vrow.version, vrow.seq, vrow.config)
            if vrow.built is not None:
                try:
                    ver.built = built_from_dict(vrow.built)
                except Exception as exc:
                    log.warning("image %s version %s cannot be restored: %s", vrow.image_name, vrow.version, exc)
            if ver.config["state"] in ("PENDING", "IN_PROGRESS"):
                ver.config.update(state="FAILED", stateReason=RESTART_REASON, updatedAt=ids.now())
                self._save_version(ver)
            image.versions[ver.version] = ver
        for brow in self.repo.builds():
            if brow.config["buildState"] in ("PENDING", "IN_PROGRESS"):
                brow.config.update(buildState="FAILED", stateReason=RESTART_REASON)
                self.repo.save_build(brow)
            self.builds[brow.build_id] = brow
            built_version = self._maybe_version(brow.image_name, brow.version)
            if built_version is not None:
                built_version.build_id = brow.build_id
        for image in self.images.values():
            if image.config["state"] in ("CREATING", "UPDATING"):
                image.config["state"] = "CREATE_FAILED" if image.config["state"] == "CREATING" else "UPDATE_FAILED"
                self._save_image(image)

    def _save_image(self, image: Image) -> None:
        self.repo.save_image(ImageRow(image.name, image.config))

    def _save_version(self, ver: ImageVersion) -> None:
        built = built_to_dict(ver.built) if ver.built is not None else None
        self.repo.save_version(VersionRow(ver.image_name, ver.version, ver.seq, ver.config, built))

    # -- lookups ----------------------------------------------------------------------------------

    def arn(self, name: str) -> str:
        return ids.image_arn(self.settings.region, self.settings.account_id, name)

    def image(self, identifier: str) -> Image:
        name = ids.image_name(identifier, self.settings.region, self.settings.account_id)
        image = self.images.get(name)
        if image is None:
            raise not_found(IMAGE, identifier)
        return image

    def _maybe_version(self, name: str, version: str) -> ImageVersion | None:
        image = self.images.get(name)
        return None if image is None else image.versions.get(version)

    def version(self, identifier: str, version: str) -> ImageVersion:
        image = self.image(identifier)
        ver = image.versions.get(version)
        if ver is None:
            raise not_found(VERSION, f"{identifier}:{version}")
        return ver

    def latest(self, image: Image, usable: bool) -> ImageVersion | None:
        found = [ver for ver in image.versions.values() if (ver.usable if usable else ver.config["state"] == "FAILED")]
        return max(found, key=lambda ver: ver.seq) if found else None

    def runnable(self, identifier: str, version: str | None) -> ImageVersion:
        """The version RunMicrovm launches: the one named, or the latest SUCCESSFUL + ACTIVE one."""
        image = self.image(identifier)
        if version is not None:
            ver = self.version(identifier, version)
            if ver.config["state"] != "SUCCESSFUL" or ver.built is None:
                raise conflict(f"Image {image.name} version {version} is {ver.config['state']}; only a SUCCESSFUL "
                               "version can run.", VERSION, f"{image.name}:{version}")
            if ver.config["status"] != "ACTIVE":
                raise conflict(f"Image {image.name} version {version} is INACTIVE; make it ACTIVE with "
                               "UpdateMicrovmImageVersion first.", VERSION, f"{image.name}:{version}")
            return ver
        newest = self.latest(image, usable=True)
        if newest is None:
            raise conflict(f"Image {image.name} has no SUCCESSFUL, ACTIVE version to run (image state "
                           f"{image.config['state']}); wait for its build or check its build log.", IMAGE, image.name)
        return newest

    # -- documents --------------------------------------------------------------------------------

    def describe(self, image: Image, full: bool = True) -> dict:
        doc = {"imageArn": self.arn(image.name), "name": image.name, "state": image.config["state"],
               "createdAt": image.config["createdAt"]}
        active = self.latest(image, usable=True)
        failed = self.latest(image, usable=False)
        if active is not None:
            doc["latestActiveImageVersion"] = active.version
        if failed is not None:
            doc["latestFailedImageVersion"] = failed.version
        if full:
            if image.config.get("tags"):
                doc["tags"] = image.config["tags"]
            if image.config.get("updatedAt") is not None:
                doc["updatedAt"] = image.config["updatedAt"]
        return doc

    def describe_version(self, ver: ImageVersion, tags: bool = True) -> dict:
        doc = {k: val for k, val in ver.config.items() if not k.startswith("_")}
        doc["imageArn"] = self.arn(ver.image_name)
        doc["imageVersion"] = ver.version
        image = self.images.get(ver.image_name)
        if tags and image is not None and image.config.get("tags"):
            doc["tags"] = image.config["tags"]
        return doc

    def describe_build(self, row: BuildRow) -> dict:
        doc = {k: val for k, val in row.config.items() if not k.startswith("_")}
        doc.update(imageArn=self.arn(row.image_name), imageVersion=row.version, buildId=row.build_id)
        return doc

    # -- create / update --------------------------------------------------------------------------

    def create(self, body: dict) -> dict:
        config = v.image_request(body, update=False)
        name = config.pop("name")
        tags = v.tags(body["tags"], "tags") if body.get("tags") is not None else {}
        token = body.get("clientToken")
        existing = self.images.get(name)
        if existing is not None:
            if token and existing.config.get("clientToken") == token:
                first = min(existing.versions.values(), key=lambda ver: ver.seq)
                return self._image_response(existing, first)
            raise conflict(f"A MicroVM image named {name} already exists; update it (UpdateMicrovmImage) or pick "
                           "another name.", IMAGE, name)
        self._check_artifact(config["codeArtifact"]["uri"])
        self._need_engine()
        now = ids.now()
        image = Image(name, {"state": "CREATING", "createdAt": now, "updatedAt": now, "tags": tags,
                             "clientToken": token})
        self.images[name] = image
        self._save_image(image)
        ver = self._new_version(image, config)
        return self._image_response(image, ver)

    def update(self, identifier: str, body: dict) -> dict:
        image = self.image(identifier)
        config = v.image_request(body, update=True)
        token = body.get("clientToken")
        if token:
            for ver in image.versions.values():
                if ver.config.get("_clientToken") == token:
                    return self._image_response(image, ver, updated=True)
        if image.config["state"] in ("CREATING", "UPDATING"):
            raise conflict(f"Image {image.name} is {image.config['state']}; wait for its build to finish.",
                           IMAGE, image.name)
        self._check_artifact(config["codeArtifact"]["uri"])
        self._need_engine()
        if token:
            config["_clientToken"] = token
        image.config.update(state="UPDATING", updatedAt=ids.now())
        self._save_image(image)
        ver = self._new_version(image, config)
        return self._image_response(image, ver, updated=True)

    def _image_response(self, image: Image, ver: ImageVersion, updated: bool = False) -> dict:
        doc = self.describe(image)
        doc.update({k: val for k, val in ver.config.items()
                    if k not in ("state", "status", "stateReason", "createdAt", "updatedAt") and not k.startswith("_")})
        doc["imageVersion"] = ver.version
        if updated:
            doc.pop("tags", None)
            doc["updatedAt"] = image.config["updatedAt"]
        return doc

    def _need_engine(self) -> None:
        if self.engine is None:
            raise ApiError("InternalServerException", "This Lamina server has no MicroVM engine "
                           "(src/lamina/microvm/sandbox_engine.py is missing), so it cannot build images.")

    def _check_artifact(self, uri: str) -> None:
        parts = urlsplit(uri)
        if parts.scheme == "s3":
            raise invalid("Lamina has no S3: give codeArtifact.uri as file:///absolute/path (a directory or .zip "
                          f"with a Dockerfile at its root on the server's host), or upload the zip with POST "
                          f"{UPLOAD_PATH} (`lamina microvm image create DIR` does it) and use the URI it returns.")
        if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
            raise invalid(f"codeArtifact.uri '{uri}' is not supported: use file:///absolute/path or a URI returned "
                          f"by POST {UPLOAD_PATH}.")
        path = Path(unquote(parts.path))
        if not path.is_absolute() or not path.exists():
            raise invalid(f"codeArtifact.uri '{uri}': {path} does not exist on the server's host.")
        if path.is_file() and not zipfile.is_zipfile(path):
            raise invalid(f"codeArtifact.uri '{uri}': {path} is neither a directory nor a zip file.")

    def _new_version(self, image: Image, config: dict) -> ImageVersion:
        seq = max((ver.seq for ver in image.versions.values()), default=0) + 1
        now = ids.now()
        ver = ImageVersion(image.name, f"{seq}.0", seq,
                           {**config, "state": "PENDING", "status": "ACTIVE", "createdAt": now, "updatedAt": now})
        image.versions[ver.version] = ver
        self._save_version(ver)
        arch, chipset = _arch()
        build = BuildRow(ids.new_build_id(), image.name, ver.version,
                         {"buildState": "PENDING", "architecture": arch, "chipset": chipset, "chipsetGeneration": "1",
                          "createdAt": now})
        ver.build_id = build.build_id
        self.builds[build.build_id] = build
        self.repo.save_build(build)
        task = asyncio.get_running_loop().create_task(self._build(image, ver, build))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return ver

    async def _build(self, image: Image, ver: ImageVersion, build: BuildRow) -> None:
        def emit(line: str) -> None:
            self.repo.append_log(build.build_id, line.rstrip("\n") + "\n")

        workdir = self.root / "builds" / build.build_id
        layer = self.root / "images" / image.name / str(ver.seq)
        ver.config.update(state="IN_PROGRESS", updatedAt=ids.now())
        self._save_version(ver)
        build.config["buildState"] = "IN_PROGRESS"
        self.repo.save_build(build)
        first = ver.seq == min(x.seq for x in image.versions.values())
        try:
            emit(f"lamina: building {image.name} version {ver.version} from {ver.config['codeArtifact']['uri']}")
            context = workdir / "context"
            await asyncio.to_thread(unpack_artifact, ver.config["codeArtifact"]["uri"], context)
            if not (context / "Dockerfile").is_file():
                raise BuildError("The code artifact has no Dockerfile at its root.")
            if layer.exists():
                shutil.rmtree(layer)
            layer.mkdir(parents=True)
            assert self.engine is not None
            hooks = v.hooks(ver.config)
            built = await self.engine.build(BuildRequest(
                image_name=image.name, version=ver.version, context_dir=context, layer_dir=layer, hooks=hooks,
                env=dict(ver.config.get("environmentVariables") or {}), memory_mib=v.memory_mib(ver.config),
                log=emit))
        except Exception as exc:
            reason = str(exc) if isinstance(exc, BuildError) else f"Internal error: {type(exc).__name__}: {exc}"
            if not isinstance(exc, BuildError):
                log.exception("building %s %s failed", image.name, ver.version)
            emit(f"lamina: build FAILED: {reason}")
            if self.images.get(image.name) is not image or ver.version not in image.versions:
                return  # deleted meanwhile
            ver.config.update(state="FAILED", stateReason=reason, updatedAt=ids.now())
            build.config.update(buildState="FAILED", stateReason=reason)
            image.config.update(state="CREATE_FAILED" if first else "UPDATE_FAILED", updatedAt=ids.now())
        else:
            emit("lamina: build SUCCESSFUL")
            if self.images.get(image.name) is not image or ver.version not in image.versions:
                if self.engine is not None:
                    self.engine.forget(built)
                return
            ver.built = built
            ver.config.update(state="SUCCESSFUL", updatedAt=ids.now())
            build.config["buildState"] = "SUCCESSFUL"
            with contextlib.suppress(OSError):
                build.config["snapshotBuild"] = {"diskSnapshotSizeInBytes": _tree_size(layer)}
            image.config.update(state="CREATED" if first else "UPDATED", updatedAt=ids.now())
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        self._save_version(ver)
        self.repo.save_build(build)
        self._save_image(image)

    # -- reads ------------------------------------------------------------------------------------

    def list(self, max_results: int | None, next_token: str | None, name_filter: str | None) -> dict:
        images = [img for img in self.images.values() if not name_filter or name_filter in img.name]
        chunk, token = ids.page(images, max_results, next_token)
        return _listing([self.describe(img, full=False) for img in chunk], token)

    def list_versions(self, identifier: str, max_results: int | None, next_token: str | None) -> dict:
        image = self.image(identifier)
        versions = sorted(image.versions.values(), key=lambda ver: ver.seq)
        chunk, token = ids.page(versions, max_results, next_token)
        return _listing([self.describe_version(ver) for ver in chunk], token)

    # builtins.list: in this class, `list` is the ListMicrovmImages method.
    def _build_of(self, ver: ImageVersion) -> builtins.list[BuildRow]:
        return [b for b in self.builds.values() if b.image_name == ver.image_name and b.version == ver.version]

    def get_build(self, identifier: str, version: str, build_id: str) -> BuildRow:
        ver = self.version(identifier, version)
        for row in self._build_of(ver):
            if row.build_id == build_id:
                return row
        raise not_found("MicrovmImageBuild", build_id)

    def list_builds(self, identifier: str, version: str, max_results: int | None, next_token: str | None,
                    filters: dict[str, str]) -> dict:
        ver = self.version(identifier, version)
        rows = [b for b in self._build_of(ver) if all(b.config.get(k) == val for k, val in filters.items() if val)]
        chunk, token = ids.page(rows, max_results, next_token)
        return _listing([self.describe_build(row) for row in chunk], token)

    def build_log(self, identifier: str, version: str, build_id: str, offset: int) -> tuple[str, str]:
        """(log text from offset, build state) — Lamina's own endpoint; AWS sends build logs to CloudWatch."""
        row = self.get_build(identifier, version, build_id)
        text = self.repo.build_log(build_id) or ""
        return text[offset:], row.config["buildState"]

    # -- changes ----------------------------------------------------------------------------------

    def update_version(self, identifier: str, version: str, body: dict) -> dict:
        ver = self.version(identifier, version)
        status = body.get("status")
        if status not in ("ACTIVE", "INACTIVE"):
            raise invalid(f"status must be ACTIVE or INACTIVE, not {status!r}.")
        ver.config.update(status=status, updatedAt=ids.now())
        self._save_version(ver)
        return self.describe_version(ver)

    def delete_version(self, identifier: str, version: str) -> dict:
        ver = self.version(identifier, version)
        image = self.images[ver.image_name]
        if ver.config["state"] in ("PENDING", "IN_PROGRESS"):
            raise conflict(f"Version {version} of {image.name} is still building; delete it when its build is done.",
                           VERSION, f"{image.name}:{version}")
        live = self.active_instances(image.name, version)
        if live:
            raise conflict(f"{len(live)} MicroVM(s) of {image.name} version {version} are not TERMINATED "
                           f"({', '.join(live[:3])}); terminate them first.", VERSION, f"{image.name}:{version}")
        self._drop_version(ver)
        del image.versions[version]
        self.repo.delete_version(image.name, version)
        return {"imageIdentifier": identifier, "imageVersion": version, "state": "DELETED"}

    def delete(self, identifier: str) -> dict:
        image = self.image(identifier)
        if image.config["state"] in ("CREATING", "UPDATING"):
            raise conflict(f"Image {image.name} is {image.config['state']}; delete it when its build is done.",
                           IMAGE, image.name)
        live = self.active_instances(image.name, None)
        if live:
            raise conflict(f"{len(live)} MicroVM(s) of image {image.name} are not TERMINATED "
                           f"({', '.join(live[:3])}); terminate them first.", IMAGE, image.name)
        for ver in image.versions.values():
            self._drop_version(ver)
        del self.images[image.name]
        self.repo.delete_image(image.name)
        for build_id in [b for b, row in self.builds.items() if row.image_name == image.name]:
            del self.builds[build_id]
        shutil.rmtree(self.root / "images" / image.name, ignore_errors=True)
        return {"imageIdentifier": identifier, "state": "DELETED"}

    def _drop_version(self, ver: ImageVersion) -> None:
        if ver.built is not None and self.engine is not None:
            try:
                self.engine.forget(ver.built)
            except Exception:
                log.exception("engine.forget(%s %s) failed", ver.image_name, ver.version)
        shutil.rmtree(self.root / "images" / ver.image_name / str(ver.seq), ignore_errors=True)

    # -- tags -------------------------------------------------------------------------------------

    def tags(self, arn: str) -> dict[str, str]:
        return dict(self.image(arn).config.get("tags") or {})

    def tag(self, arn: str, tags: dict[str, str]) -> None:
        image = self.image(arn)
        image.config["tags"] = {**(image.config.get("tags") or {}), **v.tags(tags)}
        self._save_image(image)

    def untag(self, arn: str, keys: builtins.list[str]) -> None:
        image = self.image(arn)
        image.config["tags"] = {k: val for k, val in (image.config.get("tags") or {}).items() if k not in keys}
        self._save_image(image)

    # -- uploads ----------------------------------------------------------------------------------

    def upload_path(self) -> tuple[Path, Path]:
        """(uploads folder, a fresh temp file in it) for a streamed upload."""
        folder = self.root / "uploads"
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".part")
        os.close(fd)
        return folder, Path(tmp)

    def finish_upload(self, tmp: Path, digest: hashlib._Hash) -> str:
        if not zipfile.is_zipfile(tmp):
            tmp.unlink(missing_ok=True)
            raise invalid("The upload is not a zip file: send a zip of the directory with the Dockerfile at its root.")
        final = tmp.with_name(digest.hexdigest() + ".zip")
        tmp.replace(final)
        return final.as_uri()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task


def _listing(items: list, token: str | None) -> dict:
    out: dict = {"items": items}
    if token:
        out["nextToken"] = token
    return out


def _tree_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def unpack_artifact(uri: str, dest: Path) -> None:
    """Copy a directory, or extract a zip (refusing paths that leave `dest`), into dest."""
    src = Path(unquote(urlsplit(uri).path))
    if dest.exists():
        shutil.rmtree(dest)
    if src.is_dir():
        shutil.copytree(src, dest, symlinks=True)
        return
    dest.mkdir(parents=True)
    root = dest.resolve()
    with zipfile.ZipFile(src) as zf:
        for info in zf.infolist():
            target = (dest / info.filename).resolve()
            if target != root and root not in target.parents:
                raise BuildError(f"The zip entry {info.filename!r} points outside the archive's folder.")
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as fin, open(target, "wb") as fout:
                shutil.copyfileobj(fin, fout)
            mode = (info.external_attr >> 16) & 0o777
            os.chmod(target, mode or 0o644)
