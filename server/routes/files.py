"""/v1/files: upload (streamed, size-limited, JSONL checked), list, read,
delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse

from auth.context import Caller
from auth.policy import Scoped
from auth.scopes import INFERENCE, READ
from openai_compat.lists import page
from server.deps import PoolDep, SettingsDep
from server.jobs import files, public

router = APIRouter(prefix="/v1", tags=["files"])

Writer = Annotated[Caller, Depends(Scoped(INFERENCE))]
Reader = Annotated[Caller, Depends(Scoped(INFERENCE, READ))]


@router.post("/files")
async def upload_file(
    request: Request, caller: Writer, pool: PoolDep, settings: SettingsDep
) -> dict:
    """Upload a file (multipart: ``file`` and ``purpose``)."""
    upload = await files.receive(request, settings=settings)
    row = await files.insert_file(
        pool, file_id=upload.file_id, tenant=caller.tenant, purpose=upload.purpose,
        filename=upload.filename, size=upload.size, lines=upload.lines,
    )  # fmt: skip
    return public.file(row)


@router.get("/files")
async def list_files(
    caller: Reader,
    pool: PoolDep,
    purpose: Annotated[str | None, Query()] = None,
    after: Annotated[str | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> dict:
    """The caller's files, newest first."""
    rows, more = await files.list_files(
        pool, tenant=caller.tenant, purpose=purpose, limit=limit, after=after
    )
    data = [public.file(row) for row in rows]
    return page(data, has_more=more)


@router.get("/files/{file_id}")
async def get_file(file_id: str, caller: Reader, pool: PoolDep) -> dict:
    """One file's description."""
    return public.file(
        await files.get_file(pool, tenant=caller.tenant, file_id=file_id)
    )


@router.get("/files/{file_id}/content")
async def file_content(
    file_id: str, caller: Reader, pool: PoolDep, settings: SettingsDep
) -> FileResponse:
    """The file's bytes."""
    row = await files.get_file(pool, tenant=caller.tenant, file_id=file_id)
    path = files.path_of(files.files_dir(settings), row["id"])
    return FileResponse(path, media_type="application/octet-stream")


@router.delete("/files/{file_id}")
async def delete_file(
    file_id: str, caller: Writer, pool: PoolDep, settings: SettingsDep
) -> dict:
    """Delete the file and its bytes."""
    await files.delete_file(
        pool, tenant=caller.tenant, file_id=file_id, folder=files.files_dir(settings)
    )
    return {"id": file_id, "object": "file", "deleted": True}
