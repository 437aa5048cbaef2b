from fix_llm import chat_server, llm_server  # noqa: F401
from fix_openai import _embedding_server_process, embedding_server  # noqa: F401
from fix_rerank import _rerank_server_process, rerank_server  # noqa: F401
from fix_roles import roles  # noqa: F401

from fix_db import db, db_url, empty_db_url, postgresql, postgresql_proc  # noqa: F401
