"""The app's pages, the settings that outlive a page switch, and the design link kept in the URL.

A rerun executes only the page in view (st.navigation), so a slider move on the Architecture page never
reads the runs folder. Widgets of a page not in view lose their state (Streamlit cleans up widgets that
were not drawn); `keep_settings` hands their values back to Session State at the top of every run, so the
Train page's settings survive a visit to another page.
"""

from __future__ import annotations

import streamlit as st

from explorer.errors import ConfigError
from explorer.ui import links
from explorer.ui import state as arch_keys
from explorer.ui import train_state as train_keys

PAGES_DIR = "explorer/ui/pages"  # relative to streamlit_app.py
# (script, title, icon, url_path); the first is the default page, at the root URL.
PAGES = (
    ("architecture.py", "Architecture", ":material/memory:", "architecture"),
    ("data.py", "Data", ":material/photo_library:", "data"),
    ("train.py", "Train", ":material/model_training:", "train"),
    ("checkpoints.py", "Checkpoints", ":material/save:", "checkpoints"),
    ("inspect.py", "Inside a net", ":material/visibility:", "inspect"),
    ("runs.py", "Runs", ":material/table_chart:", "runs"),
    ("search.py", "Search", ":material/travel_explore:", "search"),
)
LINK_READ = "app.link_read"


def pages() -> list[st.Page]:
    return [st.Page(f"{PAGES_DIR}/{script}", title=title, icon=icon, url_path=url_path, default=i == 0)
            for i, (script, title, icon, url_path) in enumerate(PAGES)]


def page_path(url_path: str) -> str:
    """The script of the page at `url_path` (what AppTest.switch_page takes)."""
    return next(f"{PAGES_DIR}/{script}" for script, _, _, path in PAGES if path == url_path)


def _setting_keys() -> list[str]:
    """Every settings widget's key: the sidebar's (hidden blocks included) and the Train page's."""
    arch = [arch_keys.block_key(i, name) for i in range(1, arch_keys.MAX_CONV_BLOCKS + 1)
            for name in arch_keys.BLOCK_FIELDS]
    arch += [arch_keys.fc_key(i) for i in range(1, arch_keys.MAX_FC_LAYERS + 1)]
    train = [train_keys.key(f) for f in train_keys.FIELDS]
    train += [train_keys.RECIPE, train_keys.SOURCE, train_keys.FOLDER, train_keys.SYNTHETIC_SIZE,
              train_keys.NAME, train_keys.TIME_BUDGET]
    return arch + train


def keep_settings() -> None:
    """Re-own every setting's value so a page switch does not reset the widgets drawn on another page."""
    state = st.session_state
    for key in _setting_keys():
        if key in state:
            state[key] = state[key]


def apply_link() -> str | None:
    """First run of a session: put the URL's design into the widgets. The message says why a bad link was
    ignored (the defaults are used); None otherwise."""
    if LINK_READ in st.session_state:
        return None
    st.session_state[LINK_READ] = True
    design, message = links.read(st.query_params)
    if design is not None:
        st.session_state.update(links.design_values(design))
    return message


def sync_link() -> None:
    """Write the widgets' design into the URL (only when it changed); while they describe an invalid design the
    last valid link stays, so a copied link always opens something."""
    train_keys.init_state(st.session_state)
    try:
        wanted = links.encode(links.design_of(st.session_state))
    except ConfigError:
        return
    params = st.query_params
    current = {k: params[k] for k in links.PARAMS if k in params}
    if current == wanted:
        return
    for stale in set(current) - set(wanted):
        del params[stale]
    params.update(wanted)
