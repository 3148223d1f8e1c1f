"""The four connection forms as a user sees them in Airflow's UI, checked against get_provider_info().

Each form is opened once in headless Chromium (Add Connection, choose the type, open Extra Fields),
read from the DOM and saved as a screenshot in docs/forms/<conn_type>.png. The tests then compare
what the page shows with what the provider declares. A few hard-coded expectations guard the
fields that matter most against a wrong declaration.
"""

from __future__ import annotations

import base64
import json
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from airflow_provider_m2m.auth.client_auth import load_certificate
from airflow_provider_m2m.get_provider_info import PACKAGE_NAME, get_provider_info

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Locator, Page

REPO_ROOT = Path(__file__).resolve().parents[2]
# Rewritten on every run. The images are pixel-identical between runs with the same Chromium and
# fonts, so git shows a change only when the form itself changed.
SCREENSHOT_DIR = REPO_ROOT / "docs" / "forms"

PROVIDER_INFO = get_provider_info()
CONNECTION_TYPES = {info["connection-type"]: info for info in PROVIDER_INFO["connection-types"]}

# Labels of the standard connection fields in Airflow 3.3.2's UI (i18n/locales/en/admin.json),
# keyed by the input's name attribute. `extra` is the Extra Fields JSON editor, not a field row.
# NOTE: none of the four forms shows Schema or Port, so those two input names are not exercised.
STANDARD_FIELD_LABELS = {
    "description": "Description",
    "host": "Host",
    "schema": "Schema",
    "port": "Port",
    "login": "Login",
    "password": "Password",
}
# Extra fields are rendered with inputs named element_<conn-field key>.
EXTRA_FIELD_PREFIX = "element_"
# Texts of Airflow 3.3.2's UI (i18n/locales/en/components.json): the placeholder of a text input
# whose schema has `examples`, and the error under an empty required field.
EXAMPLES_PLACEHOLDER = "Start typing to see options"
REQUIRED_ERROR = "This field is required"
REQUEST_TIMEOUT_SECONDS = 10

# Reads every visible field row of the dialog: the input's name, label, placeholder, type, value,
# helper text, error text, required mark and the suggestions of its datalist.
_READ_FIELDS_JS = """
(dialog) => Array.from(dialog.querySelectorAll('[data-scope="field"][data-part="root"]'))
  .filter((row) => row.checkVisibility())
  .map((row) => {
    // A JSON field is a code editor without a named input; its wrapper has the element_<key> id.
    const named = row.querySelector('[name]') ?? row.querySelector('[id^="element_"]');
    const input = row.querySelector('input:not([type="hidden"]), textarea');
    const label = row.querySelector('label[data-part="label"]')?.cloneNode(true);
    label?.querySelectorAll('[data-part="required-indicator"], .chakra-field__requiredIndicator')
      .forEach((indicator) => indicator.remove());
    const helper = row.querySelector('[data-part="helper-text"]');
    const error = row.querySelector('[data-part="error-text"]');
    return {
      name: named ? (named.getAttribute('name') ?? named.id) : null,
      label: label ? label.textContent.trim() : null,
      placeholder: input ? input.getAttribute('placeholder') : null,
      input_type: input ? input.type : null,
      role: input ? input.getAttribute('role') : null,
      // A drop-down keeps its selected value in a hidden input named like the field.
      value: !input ? null
        : input.type === 'checkbox' ? input.checked
        : input.getAttribute('role') === 'combobox' ? (named?.value ?? null)
        : input.value,
      helper_text: helper ? helper.innerText.trim() : null,
      error_text: error ? error.innerText.trim() : null,
      required: row.querySelector('label[data-part="label"]')?.hasAttribute('data-required') ?? false,
      examples: input?.list ? Array.from(input.list.options).map((option) => option.value) : [],
    };
  })
"""


# Waits two frames for React to re-render, then for the dialog's finite CSS animations and
# transitions (accordion height, focus rings) to finish, so that measurements and screenshots
# see the final layout.
_SETTLE_JS = """
async (root) => {
  await new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));
  const finite = root.getAnimations({subtree: true})
    .filter((animation) => animation.effect?.getTiming().iterations !== Infinity);
  await Promise.all(finite.map((animation) => animation.finished.catch(() => null)));
}
"""


@dataclass(frozen=True)
class RenderedField:
    """One field row of the connection form, as the browser rendered it."""

    name: str
    label: str
    placeholder: str | None
    input_type: str | None
    role: str | None
    value: str | bool | None
    helper_text: str | None
    error_text: str | None
    # True when the label carries the required mark.
    required: bool
    # Suggestions of the input's datalist, from the field's schema `examples`.
    examples: list[str]


@dataclass(frozen=True)
class RenderedForm:
    """The Add Connection form of one connection type, as the browser rendered it."""

    conn_type: str
    standard_fields: dict[str, RenderedField]
    # Keyed by conn-field key, in the order the form shows them.
    extra_fields: dict[str, RenderedField]
    # Options of each drop-down extra field, in the order the menu lists them.
    choices: dict[str, list[str]]
    screenshot: Path


def _declared(conn_type: str) -> dict[str, Any]:
    return CONNECTION_TYPES[conn_type]


def _behaviour(conn_type: str) -> dict[str, Any]:
    return _declared(conn_type)["ui-field-behaviour"]


def _expected_standard_fields(conn_type: str) -> set[str]:
    hidden = set(_behaviour(conn_type)["hidden-fields"])
    return {name for name in STANDARD_FIELD_LABELS if name not in hidden}


def _normalize_text(text: str | None) -> str:
    return re.sub(r"\s+", " ", text or "").strip()


def _read_rows(dialog: Locator) -> tuple[dict[str, RenderedField], dict[str, RenderedField]]:
    """Read the visible field rows of the dialog, split into standard and extra fields."""
    standard: dict[str, RenderedField] = {}
    extra: dict[str, RenderedField] = {}
    for row in dialog.evaluate(_READ_FIELDS_JS):
        name = row.pop("name")
        if name is None:
            continue
        field = RenderedField(name=name, **row)
        if name.startswith(EXTRA_FIELD_PREFIX):
            extra[name.removeprefix(EXTRA_FIELD_PREFIX)] = field
        elif name in STANDARD_FIELD_LABELS:
            standard[name] = field
    return standard, extra


def _open_section(page: Page, dialog: Locator, title: str, first_field_name: str | None) -> Locator:
    """Open one section of the form's accordion and wait until its rows are laid out.

    The accordion shows one section at a time, so opening one closes the other.
    """
    toggle = dialog.get_by_role("button", name=title, exact=True)
    if toggle.get_attribute("aria-expanded") != "true":
        toggle.click()
    page.wait_for_function("(toggle) => toggle.getAttribute('aria-expanded') === 'true'", arg=toggle.element_handle())
    if first_field_name is not None:
        # A JSON field has no named input, only a wrapper with that id, as in _READ_FIELDS_JS.
        row_visible = """(name) => (document.getElementsByName(name)[0] ?? document.getElementById(name))
            ?.closest('[data-part="root"]')?.checkVisibility()"""
        page.wait_for_function(row_visible, arg=first_field_name)
    dialog.evaluate(_SETTLE_JS)
    return dialog.locator('[data-scope="accordion"][data-part="item"]').filter(
        has=page.get_by_role("button", name=title, exact=True)
    )


def _read_choices(page: Page, dialog: Locator, key: str) -> list[str]:
    """Open the drop-down of extra field `key`, read its options and close it again."""
    dialog.locator(f"#{EXTRA_FIELD_PREFIX}{key}").get_by_role("combobox").click()
    options = page.get_by_role("option")
    options.first.wait_for()
    labels = [text.strip() for text in options.all_inner_texts()]
    # Escape closes the whole dialog, not only the menu, so a click on the dialog's heading closes the menu.
    dialog.get_by_role("heading", name="Add Connection").click()
    options.first.wait_for(state="detached")
    return labels


def _capture(page: Page, dialog: Locator, top: Locator, bottom: Locator) -> bytes:
    """Screenshot the dialog's full width from the top of `top` to the bottom of `bottom`.

    The window grows to fit first, because Chromium paints only what lies inside the viewport.
    """
    page.evaluate("document.activeElement && document.activeElement.blur()")
    page.mouse.move(0, 0)
    dialog.evaluate(_SETTLE_JS)
    bottom_box = bottom.bounding_box()
    needed_height = int(bottom_box["y"] + bottom_box["height"]) + 40
    if needed_height > page.viewport_size["height"]:
        page.set_viewport_size({"width": page.viewport_size["width"], "height": needed_height})
        dialog.evaluate(_SETTLE_JS)
    dialog_box = dialog.bounding_box()
    top_box = top.bounding_box()
    bottom_box = bottom.bounding_box()
    clip = {
        "x": dialog_box["x"],
        "y": top_box["y"],
        "width": dialog_box["width"],
        "height": bottom_box["y"] + bottom_box["height"] - top_box["y"],
    }
    return page.screenshot(clip=clip, animations="disabled", caret="hide")


def _save_stacked(page: Page, images: list[bytes], path: Path) -> None:
    """Stack PNG screenshots vertically into one PNG, rendered by the same browser (no imaging library)."""
    sources = "".join(
        f'<img style="display:block" src="data:image/png;base64,{base64.b64encode(image).decode()}">'
        for image in images
    )
    page.set_content(
        f'<body style="margin:0"><div id="stack" style="display:inline-block;background:#fff">{sources}</div></body>'
    )
    page.wait_for_function("Array.from(document.images).every((image) => image.complete)")
    path.parent.mkdir(parents=True, exist_ok=True)
    page.locator("#stack").screenshot(path=str(path), animations="disabled")


def _read_form(page: Page, base_url: str, conn_type: str) -> RenderedForm:
    declared = _declared(conn_type)
    hook_name = declared["hook-name"]
    page.goto(f"{base_url}/connections")
    page.get_by_role("button", name="Add Connection").click()
    dialog = page.get_by_role("dialog")
    type_box = dialog.get_by_role("combobox", name="Connection Type")
    type_box.fill(hook_name)
    page.get_by_role("option", name=hook_name, exact=True).click()

    # Standard Fields is open after the type is chosen.
    shown_standard = [name for name in STANDARD_FIELD_LABELS if name in _expected_standard_fields(conn_type)]
    standard_section = _open_section(page, dialog, "Standard Fields", next(iter(shown_standard), None))
    standard, _ = _read_rows(dialog)
    standard_image = _capture(page, dialog, dialog, standard_section)

    first_key = next(iter(declared["conn-fields"]))
    extra_section = _open_section(page, dialog, "Extra Fields", f"{EXTRA_FIELD_PREFIX}{first_key}")
    _, extra = _read_rows(dialog)
    choices = {key: _read_choices(page, dialog, key) for key, field in extra.items() if field.role == "combobox"}
    extra_image = _capture(page, dialog, extra_section, extra_section)
    json_section = dialog.locator('[data-scope="accordion"][data-part="item"]').filter(
        has=page.get_by_role("button", name="Extra Fields JSON", exact=True)
    )
    footer_image = _capture(page, dialog, json_section, dialog)

    # The accordion never shows both sections at once, so the saved image stacks the dialog with
    # Standard Fields open, the open Extra Fields section, and the rest of the dialog below it.
    screenshot = SCREENSHOT_DIR / f"{conn_type}.png"
    _save_stacked(page, [standard_image, extra_image, footer_image], screenshot)
    return RenderedForm(conn_type, standard, extra, choices, screenshot)


@pytest.fixture(scope="session")
def render_form(chromium_context: BrowserContext, airflow_base_url: str) -> Callable[[str], RenderedForm]:
    """Return a function that opens the form of a connection type once and caches what it read."""
    forms: dict[str, RenderedForm] = {}
    failures: dict[str, str] = {}

    def render(conn_type: str) -> RenderedForm:
        # A form that failed to render fails every later test of it at once instead of timing out again.
        if conn_type in failures:
            pytest.fail(f"the {conn_type} form failed to render in an earlier test: {failures[conn_type]}")
        if conn_type not in forms:
            page = chromium_context.new_page()
            try:
                forms[conn_type] = _read_form(page, airflow_base_url, conn_type)
            except Exception as err:
                first_line = next(iter(str(err).splitlines()), "")
                failures[conn_type] = f"{type(err).__name__}: {first_line}"
                raise
            finally:
                page.close()
        return forms[conn_type]

    return render


@pytest.fixture(params=sorted(CONNECTION_TYPES))
def form(request: pytest.FixtureRequest, render_form: Callable[[str], RenderedForm]) -> RenderedForm:
    return render_form(request.param)


# --- Declared expectations, read from get_provider_info() -------------------------------------------


def test_standard_fields_hidden_as_declared(form: RenderedForm) -> None:
    assert set(form.standard_fields) == _expected_standard_fields(form.conn_type)


def test_standard_field_labels(form: RenderedForm) -> None:
    relabeling = _behaviour(form.conn_type)["relabeling"]
    for name, field in form.standard_fields.items():
        expected = relabeling.get(name, STANDARD_FIELD_LABELS[name])
        assert field.label == expected, f"{form.conn_type}: label of standard field {name!r}"


def test_standard_field_placeholders(form: RenderedForm) -> None:
    placeholders = _behaviour(form.conn_type)["placeholders"]
    for name, field in form.standard_fields.items():
        expected = placeholders.get(name, "")
        assert (field.placeholder or "") == expected, f"{form.conn_type}: placeholder of standard field {name!r}"


def test_standard_password_field_is_masked(form: RenderedForm) -> None:
    password = form.standard_fields.get("password")
    assert password is None or password.input_type == "password"


def test_extra_fields_in_declared_order(form: RenderedForm) -> None:
    assert list(form.extra_fields) == list(_declared(form.conn_type)["conn-fields"])


def test_extra_field_labels(form: RenderedForm) -> None:
    for key, declared in _declared(form.conn_type)["conn-fields"].items():
        assert key in form.extra_fields, f"{form.conn_type}: extra field {key!r} is not shown"
        assert form.extra_fields[key].label == declared["label"], f"{form.conn_type}: label of extra field {key!r}"


def test_extra_field_descriptions(form: RenderedForm) -> None:
    for key, declared in _declared(form.conn_type)["conn-fields"].items():
        assert key in form.extra_fields, f"{form.conn_type}: extra field {key!r} is not shown"
        rendered_description = _normalize_text(form.extra_fields[key].helper_text)
        expected = _normalize_text(declared["description"])
        assert rendered_description == expected, f"{form.conn_type}: description of {key!r}"


def test_secret_extra_fields_are_masked(form: RenderedForm) -> None:
    for key, declared in _declared(form.conn_type)["conn-fields"].items():
        is_secret = declared["schema"].get("format") == "password"
        input_type = form.extra_fields[key].input_type
        if is_secret:
            assert input_type == "password", f"{form.conn_type}: secret extra field {key!r} is shown in clear"
        else:
            assert input_type != "password", f"{form.conn_type}: extra field {key!r} is masked but not secret"


def test_extra_field_defaults_prefilled(form: RenderedForm) -> None:
    for key, declared in _declared(form.conn_type)["conn-fields"].items():
        schema = declared["schema"]
        if "default" not in schema:
            continue
        field = form.extra_fields[key]
        if isinstance(schema["default"], bool):
            assert field.value is schema["default"], f"{form.conn_type}: default of {key!r}"
        else:
            assert field.value == str(schema["default"]), f"{form.conn_type}: default of {key!r}"


def test_choice_fields_offer_declared_values(form: RenderedForm) -> None:
    declared_choices = {
        key: declared["schema"]["enum"]
        for key, declared in _declared(form.conn_type)["conn-fields"].items()
        if "enum" in declared["schema"]
    }
    assert set(form.choices) == set(declared_choices)
    for key, values in declared_choices.items():
        assert form.choices[key] == values, f"{form.conn_type}: options of {key!r}"


def test_extra_field_examples_offered(form: RenderedForm) -> None:
    for key, declared in _declared(form.conn_type)["conn-fields"].items():
        expected = declared["schema"].get("examples", [])
        assert form.extra_fields[key].examples == expected, f"{form.conn_type}: suggestions of {key!r}"


def test_extra_field_placeholders(form: RenderedForm) -> None:
    # Airflow 3.3.2 gives an extra text field a placeholder only when its schema has examples, and
    # then a fixed text. ui-field-behaviour placeholders never reach extra fields.
    for key, declared in _declared(form.conn_type)["conn-fields"].items():
        field = form.extra_fields[key]
        if field.role == "combobox":
            continue
        expected = EXAMPLES_PLACEHOLDER if declared["schema"].get("examples") else None
        assert field.placeholder == expected, f"{form.conn_type}: placeholder of {key!r}"


def test_required_extra_fields_marked(form: RenderedForm) -> None:
    for key, declared in _declared(form.conn_type)["conn-fields"].items():
        schema_type = declared["schema"]["type"]
        required = "null" not in (schema_type if isinstance(schema_type, list) else [schema_type])
        field = form.extra_fields[key]
        assert field.required is required, f"{form.conn_type}: required mark of {key!r}"
        if required and "default" not in declared["schema"]:
            assert field.error_text == REQUIRED_ERROR, f"{form.conn_type}: error under empty {key!r}"
        else:
            assert field.error_text is None, f"{form.conn_type}: error under {key!r}"


def test_form_screenshot_saved(form: RenderedForm) -> None:
    header = form.screenshot.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", header[16:24])
    # Each extra-field row is about 100 px tall in these images, so 60 px a row is a safe lower
    # bound that an image missing the Extra Fields section stays below.
    assert width >= 600
    assert height >= 60 * len(form.extra_fields)


# --- Hard-coded expectations for the fields that matter most -----------------------------------------


def test_salesforce_form_offers_flow_choice(render_form: Callable[[str], RenderedForm]) -> None:
    form = render_form("salesforce_m2m")
    assert form.extra_fields["flow"].label == "OAuth flow"
    assert form.choices["flow"] == ["client_credentials", "jwt_bearer"]


def test_salesforce_flow_required_without_default(render_form: Callable[[str], RenderedForm]) -> None:
    flow = render_form("salesforce_m2m").extra_fields["flow"]
    assert flow.required is True
    assert flow.value == ""
    assert flow.error_text == REQUIRED_ERROR


def test_salesforce_form_relabels_standard_fields(render_form: Callable[[str], RenderedForm]) -> None:
    form = render_form("salesforce_m2m")
    assert set(form.standard_fields) == {"description", "host", "login", "password"}
    assert form.standard_fields["host"].label == "My Domain URL"
    assert form.standard_fields["login"].label == "Consumer key"
    assert form.standard_fields["password"].label == "Consumer secret"


def test_bigquery_form_hides_all_standard_fields(render_form: Callable[[str], RenderedForm]) -> None:
    form = render_form("bigquery_m2m")
    assert set(form.standard_fields) == {"description"}
    assert form.extra_fields["key_json"].input_type == "password"


def test_oauth_form_shows_client_id_and_secret_only(render_form: Callable[[str], RenderedForm]) -> None:
    form = render_form("oauth_m2m")
    assert set(form.standard_fields) == {"description", "login", "password"}
    assert form.standard_fields["login"].label == "Client ID"
    assert form.choices["client_auth_method"] == ["client_secret_basic", "client_secret_post", "private_key_jwt"]


def test_oauth_certificate_shown_in_clear(render_form: Callable[[str], RenderedForm]) -> None:
    form = render_form("oauth_m2m")
    assert form.extra_fields["certificate"].label == "Certificate (private_key_jwt)"
    assert form.extra_fields["certificate"].input_type == "text"
    assert form.extra_fields["private_key"].input_type == "password"
    assert "https://example-tenant.us.auth0.com/" in (form.extra_fields["assertion_audience"].helper_text or "")
    assert form.choices["signing_algorithm"] == ["RS256", "PS256", "ES256"]


def test_snowflake_form_hides_password(render_form: Callable[[str], RenderedForm]) -> None:
    form = render_form("snowflake_m2m")
    assert set(form.standard_fields) == {"description", "login"}
    assert form.standard_fields["login"].label == "User"
    assert form.extra_fields["private_key"].input_type == "password"


def test_snowflake_schema_example_shown(render_form: Callable[[str], RenderedForm]) -> None:
    schema = render_form("snowflake_m2m").extra_fields["schema"]
    assert "for example PUBLIC" in (schema.helper_text or "")
    assert schema.placeholder is None


def test_secret_fields_masked_in_every_form(render_form: Callable[[str], RenderedForm]) -> None:
    secrets = {
        "oauth_m2m": ["secondary_client_secret", "private_key", "private_key_passphrase"],
        "bigquery_m2m": ["key_json"],
        "snowflake_m2m": ["private_key", "private_key_passphrase", "client_secret"],
        "salesforce_m2m": ["private_key", "private_key_passphrase"],
    }
    for conn_type, keys in secrets.items():
        form = render_form(conn_type)
        for key in keys:
            assert form.extra_fields[key].input_type == "password", f"{conn_type}: {key!r} is shown in clear"


# --- REST API ---------------------------------------------------------------------------------------


def test_hook_meta_lists_four_connection_types(airflow_base_url: str) -> None:
    response = requests.get(f"{airflow_base_url}/ui/connections/hook_meta", timeout=REQUEST_TIMEOUT_SECONDS)
    assert response.status_code == 200
    hook_names = {meta["connection_type"]: meta["hook_name"] for meta in response.json()}
    for conn_type in ("oauth_m2m", "bigquery_m2m", "snowflake_m2m", "salesforce_m2m"):
        assert conn_type in hook_names, f"{conn_type} is missing from /ui/connections/hook_meta"
        assert hook_names[conn_type] == CONNECTION_TYPES[conn_type]["hook-name"]


def test_hook_meta_hidden_fields_have_no_placeholder(airflow_base_url: str) -> None:
    # Airflow reads a placeholder key named like a standard field as that field's, even when the
    # field is hidden and a conn-field of the same name is shown.
    response = requests.get(f"{airflow_base_url}/ui/connections/hook_meta", timeout=REQUEST_TIMEOUT_SECONDS)
    assert response.status_code == 200
    metas = {meta["connection_type"]: meta for meta in response.json()}
    for conn_type in CONNECTION_TYPES:
        for name, behaviour in metas[conn_type]["standard_fields"].items():
            if behaviour is not None and behaviour["hidden"]:
                assert behaviour["placeholder"] is None, f"{conn_type}: hidden standard field {name!r}"


def test_providers_endpoint_lists_package(airflow_base_url: str) -> None:
    response = requests.get(f"{airflow_base_url}/api/v2/providers", timeout=REQUEST_TIMEOUT_SECONDS)
    assert response.status_code == 200
    versions = {provider["package_name"]: provider["version"] for provider in response.json()["providers"]}
    assert versions.get(PACKAGE_NAME) == PROVIDER_INFO["versions"][0]


# --- Saving through the form ------------------------------------------------------------------------


def _choose_type(page: Page, dialog: Locator, conn_type: str) -> None:
    hook_name = CONNECTION_TYPES[conn_type]["hook-name"]
    dialog.get_by_role("combobox", name="Connection Type").fill(hook_name)
    page.get_by_role("option", name=hook_name, exact=True).click()


def _start_connection(page: Page, base_url: str, conn_id: str, conn_type: str) -> Locator:
    """Open Add Connection, fill in the connection id, choose the type and return the dialog."""
    page.goto(f"{base_url}/connections")
    page.get_by_role("button", name="Add Connection").click()
    dialog = page.get_by_role("dialog")
    dialog.locator('input[name="connection_id"]').fill(conn_id)
    _choose_type(page, dialog, conn_type)
    return dialog


def _choose(page: Page, dialog: Locator, key: str, value: str) -> None:
    dialog.locator(f"#{EXTRA_FIELD_PREFIX}{key}").get_by_role("combobox").click()
    page.get_by_role("option", name=value, exact=True).click()


def test_salesforce_save_needs_flow(chromium_context: BrowserContext, airflow_base_url: str) -> None:
    page = chromium_context.new_page()
    try:
        # The id and an OAuth connection type are enough to enable Save, so a disabled Save after
        # the switch to Salesforce comes from the empty flow.
        dialog = _start_connection(page, airflow_base_url, "salesforce_without_flow", "oauth_m2m")
        save = dialog.get_by_role("button", name="Save")
        page.wait_for_function("(button) => !button.disabled", arg=save.element_handle())

        _choose_type(page, dialog, "salesforce_m2m")
        _open_section(page, dialog, "Extra Fields", f"{EXTRA_FIELD_PREFIX}flow")
        save_disabled_without_flow = save.is_disabled()

        _choose(page, dialog, "flow", "client_credentials")
        dialog.evaluate(_SETTLE_JS)
        save_disabled_with_flow = save.is_disabled()
    finally:
        page.close()

    assert save_disabled_without_flow is True
    assert save_disabled_with_flow is False


def test_salesforce_form_saves_extra_fields(chromium_context: BrowserContext, airflow_base_url: str) -> None:
    conn_id = "salesforce_saved_from_form"
    consumer_secret = "consumer-secret-from-form"
    private_key_path = "/opt/airflow/secrets/server.key"
    page = chromium_context.new_page()
    try:
        dialog = _start_connection(page, airflow_base_url, conn_id, "salesforce_m2m")

        _open_section(page, dialog, "Standard Fields", "host")
        dialog.locator('input[name="host"]').fill("https://example.my.salesforce.com")
        dialog.locator('input[name="login"]').fill("3MVG9-consumer-key")
        dialog.locator('input[name="password"]').fill(consumer_secret)

        _open_section(page, dialog, "Extra Fields", f"{EXTRA_FIELD_PREFIX}flow")
        _choose(page, dialog, "flow", "jwt_bearer")
        dialog.locator(f"#{EXTRA_FIELD_PREFIX}username").fill("integration@example.com")
        dialog.locator(f"#{EXTRA_FIELD_PREFIX}private_key").fill(private_key_path)
        dialog.get_by_role("button", name="Save").click()
        dialog.wait_for(state="detached")
    finally:
        page.close()

    response = requests.get(f"{airflow_base_url}/api/v2/connections/{conn_id}", timeout=REQUEST_TIMEOUT_SECONDS)
    assert response.status_code == 200
    saved = response.json()
    assert saved["conn_type"] == "salesforce_m2m"
    assert saved["host"] == "https://example.my.salesforce.com"
    assert saved["login"] == "3MVG9-consumer-key"

    # The form stores conn-fields in `extra` under their plain keys, typed by their schema.
    extra = json.loads(saved["extra"])
    assert extra["flow"] == "jwt_bearer"
    assert extra["username"] == "integration@example.com"
    assert extra["api_version"] == "62.0"
    assert extra["session_lifetime_seconds"] == 7200
    assert extra["timeout"] == 30
    assert extra["is_sandbox"] is False

    # The REST API masks both secrets and never returns their values.
    assert saved["password"] == "***"
    assert extra["private_key"] == "***"
    assert consumer_secret not in response.text
    assert private_key_path not in response.text


def _self_signed_certificate_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "m2m-form-client")])
    now = datetime.now(timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")


def test_oauth_form_saves_certificate(chromium_context: BrowserContext, airflow_base_url: str) -> None:
    conn_id = "oauth_certificate_from_form"
    certificate_pem = _self_signed_certificate_pem()
    private_key_path = "/opt/airflow/secrets/orders-client.pem"
    audience = "https://example-tenant.us.auth0.com/"
    page = chromium_context.new_page()
    try:
        dialog = _start_connection(page, airflow_base_url, conn_id, "oauth_m2m")

        _open_section(page, dialog, "Standard Fields", "login")
        dialog.locator('input[name="login"]').fill("client-from-form")

        _open_section(page, dialog, "Extra Fields", f"{EXTRA_FIELD_PREFIX}token_url")
        dialog.locator(f"#{EXTRA_FIELD_PREFIX}token_url").fill("https://example-tenant.us.auth0.com/oauth/token")
        _choose(page, dialog, "client_auth_method", "private_key_jwt")
        dialog.locator(f"#{EXTRA_FIELD_PREFIX}private_key").fill(private_key_path)
        # A single-line input drops the line breaks of the pasted PEM, as a user's paste would.
        dialog.locator(f"#{EXTRA_FIELD_PREFIX}certificate").fill(certificate_pem)
        dialog.locator(f"#{EXTRA_FIELD_PREFIX}assertion_audience").fill(audience)
        dialog.get_by_role("button", name="Save").click()
        dialog.wait_for(state="detached")
    finally:
        page.close()

    response = requests.get(f"{airflow_base_url}/api/v2/connections/{conn_id}", timeout=REQUEST_TIMEOUT_SECONDS)
    assert response.status_code == 200
    extra = json.loads(response.json()["extra"])
    assert extra["client_auth_method"] == "private_key_jwt"
    assert extra["assertion_audience"] == audience

    # The certificate is public, so the REST API returns it, and the hook loads what the form stored.
    assert extra["certificate"] != "***"
    assert load_certificate(extra["certificate"]) == x509.load_pem_x509_certificate(certificate_pem.encode())
    assert extra["private_key"] == "***"
    assert private_key_path not in response.text
