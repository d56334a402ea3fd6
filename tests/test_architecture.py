"""Who may import whom (docs/architecture.md), checked on the import graph of the whole repository.

The graph comes from grimp (the engine behind import-linter), which reads every import statement, function-level
ones included — so a cycle cannot hide inside a function, and a forbidden import cannot hide in a dev branch
without being named below with its reason.
"""

from __future__ import annotations

from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = sorted(p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file() and p.name != "tests")

# Which package may import which (docs/architecture.md, "Who may import whom"). The two services never import each
# other: what the IdP needs of certificate status it asks through a protocol it owns (idp/certificate_records.py),
# answered once in the composition root (deploy/composition.py). Packages not listed (devstack, bench, demo_rp) are
# tooling and may import anything.
MAY_IMPORT = {
    "observability": set(),
    "wire": {"observability"},  # service_app.py installs log hygiene in every app
    "mykey": {"wire"},
    "jpki": {"wire"},
    "operator_console": {"wire"},
    "nfc_bridge": {"jpki", "wire"},
    "revocation": {"jpki", "wire", "observability", "operator_console"},
    "idp": {"jpki", "wire", "observability", "operator_console", "mykey"},
    "deploy": {"idp", "revocation", "wire"},
}

# The development CA is development tooling. These are the only modules that may import it, each for a reason.
DEVCA = "jpki.devca"
DEVCA_IMPORTERS = {
    "devstack": "make run creates the development CA and its virtual card",
    "nfc_bridge": "`card new` issues a virtual card from the development CA (a development tool)",
    "bench": "benchmarks issue certificates from it",
}
# Modules that import it only inside their development branch (MYKEY_DEV=1 and a plain-http URL), lazily.
DEVCA_DEV_BRANCHES = {
    "idp.services": "load_trust: IDP_TRUST=dev trusts the development CA's roots",
    "revocation.config": "load_issuers: REVOCATION_ISSUERS=dev creates and loads the development CA",
}


@pytest.fixture(scope="module")
def graph():
    import sys

    sys.path.insert(0, str(ROOT))
    try:
        return grimp.build_graph(*PACKAGES, cache_dir=None)
    finally:
        sys.path.remove(str(ROOT))


def importers_of(graph, target: str) -> set[str]:
    return {m for m in graph.modules if target in graph.find_modules_directly_imported_by(m)}


def test_the_graph_sees_every_package(graph):
    assert {"idp", "revocation", "mykey", "jpki", "nfc_bridge", "wire"} <= set(PACKAGES)
    assert len(graph.modules) > 80  # the check below would pass on an empty graph


@pytest.mark.parametrize("package", sorted(MAY_IMPORT))
def test_each_package_imports_only_what_it_may(graph, package):
    allowed = MAY_IMPORT[package] | {package}
    found = sorted((module, imported) for module in graph.modules if in_package(module, package)
                   for imported in graph.find_modules_directly_imported_by(module)
                   if imported.split(".")[0] in PACKAGES and imported.split(".")[0] not in allowed)
    assert not found, f"{package} imports what it may not: {found}"


def test_the_services_never_import_each_other():
    assert "revocation" not in MAY_IMPORT["idp"] and "idp" not in MAY_IMPORT["revocation"]


def in_package(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_only_development_tooling_imports_the_development_ca(graph):
    allowed = set(DEVCA_IMPORTERS) | set(DEVCA_DEV_BRANCHES)
    offenders = sorted(m for m in importers_of(graph, DEVCA)
                       if m != DEVCA and m.split(".")[0] not in allowed and m not in allowed)
    assert not offenders, f"production modules import the development CA: {offenders}"


def test_there_is_no_import_cycle(graph):
    cycles = strongly_connected(graph)
    assert not cycles, "import cycles (each list imports itself round): " + "; ".join(map(str, cycles))


def strongly_connected(graph) -> list[list[str]]:
    """Tarjan's algorithm, iterative: the groups of modules that reach each other through imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    groups: list[list[str]] = []
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            advanced = False
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph.find_modules_directly_imported_by(nxt)))))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))
    return groups


def test_the_cycle_check_finds_a_cycle_hidden_in_a_function(tmp_path, monkeypatch):
    package = tmp_path / "cyclic"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "app.py").write_text("from cyclic import web\n")
    (package / "web.py").write_text("def handler():\n    from cyclic.app import thing\n    return thing\n")
    (package / "alone.py").write_text("import cyclic.web\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert strongly_connected(grimp.build_graph("cyclic", cache_dir=None)) == [["cyclic.app", "cyclic.web"]]
