"""LangChain and LlamaIndex against Hearth with their default settings."""

from __future__ import annotations

import numpy as np


def test_langchain_chat(base_url, api_key, chat_model):
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(
        base_url=base_url, api_key=api_key, model=chat_model, max_tokens=16
    )
    reply = llm.invoke("Say hello.")
    assert reply.content.strip()
    streamed = "".join(chunk.content for chunk in llm.stream("Say hello."))
    assert streamed.strip()


def test_langchain_embeddings_send_token_ids(base_url, api_key, embedding_model):
    from langchain_openai import OpenAIEmbeddings

    # Defaults: LangChain tokenizes with tiktoken and sends token-id arrays.
    embeddings = OpenAIEmbeddings(
        base_url=base_url, api_key=api_key, model=embedding_model
    )
    vectors = embeddings.embed_documents(["hello world", "a second text"])
    query = embeddings.embed_query("hello world")
    assert len(vectors) == 2 and len(vectors[0]) == 384
    assert np.allclose(vectors[0], query, atol=1e-5)


def test_llamaindex_openai_like(base_url, api_key, chat_model):
    from llama_index.core.llms import ChatMessage
    from llama_index.llms.openai_like import OpenAILike

    llm = OpenAILike(
        api_base=base_url,
        api_key=api_key,
        model=chat_model,
        is_chat_model=True,
        max_tokens=16,
    )
    reply = llm.chat([ChatMessage(role="user", content="Say hello.")])
    assert reply.message.content.strip()
    completion = llm.complete("The sky is")
    assert completion.text.strip()


def test_langchain_responses_api_with_file_search(
    client, base_url, api_key, chat_model
):
    from langchain_openai import ChatOpenAI

    kettles = b"The blue kettle is descaled with citric acid every March."
    upload = client.files.create(file=("kettles.md", kettles), purpose="assistants")
    store = client.vector_stores.create(name="langchain")
    client.vector_stores.files.create_and_poll(
        vector_store_id=store.id, file_id=upload.id
    )
    llm = ChatOpenAI(
        base_url=base_url, api_key=api_key, model=chat_model, max_tokens=16,
        temperature=0, use_responses_api=True,
    )  # fmt: skip
    try:
        assert llm.invoke("Say hello.").text.strip()
        tool = {"type": "file_search", "vector_store_ids": [store.id]}
        reply = llm.bind_tools([tool]).invoke("How is the blue kettle descaled?")
        kinds = [block["type"] for block in reply.content]
        assert kinds == ["file_search_call", "text"]
        cited = reply.content[1]["annotations"]
        assert cited and {c["file_id"] for c in cited} == {upload.id}
    finally:
        client.vector_stores.delete(store.id)
        client.files.delete(upload.id)
