"""Field and object definitions of the emulated org: the two custom objects the demo writes to.

A definition carries what describe returns and what record validation needs (type, length,
precision and scale, required, external id, unique, picklist values).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Field types as describe names them.
ID = "id"
STRING = "string"
TEXTAREA = "textarea"
EMAIL = "email"
PICKLIST = "picklist"
CURRENCY = "currency"
DOUBLE = "double"
BOOLEAN = "boolean"
DATE = "date"
DATETIME = "datetime"
REFERENCE = "reference"

TEXT_TYPES = frozenset({ID, STRING, TEXTAREA, EMAIL, PICKLIST, REFERENCE})
NUMBER_TYPES = frozenset({CURRENCY, DOUBLE})

# SOAP types describe reports next to each field type.
SOAP_TYPES = {
    ID: "tns:ID",
    STRING: "xsd:string",
    TEXTAREA: "xsd:string",
    EMAIL: "xsd:string",
    PICKLIST: "xsd:string",
    CURRENCY: "xsd:double",
    DOUBLE: "xsd:double",
    BOOLEAN: "xsd:boolean",
    DATE: "xsd:date",
    DATETIME: "xsd:dateTime",
    REFERENCE: "tns:ID",
}

# ISO 3166-1 alpha-2 codes allowed in Country__c; the demo source draws its countries from this list.
COUNTRY_CODES: tuple[str, ...] = (
    "AR", "AT", "AU", "BE", "BR", "CA", "CH", "CL", "CN", "CO", "CZ", "DE", "DK", "ES", "FI", "FR",
    "GB", "IE", "IN", "IT", "JP", "KR", "MX", "NL", "NO", "NZ", "PE", "PL", "PT", "SE", "US", "ZA",
)
TIERS: tuple[str, ...] = ("Bronze", "Silver", "Gold", "Platinum")
RUN_STATUSES: tuple[str, ...] = ("Succeeded", "Failed", "Dry Run")
ORPHAN_ACTIONS: tuple[str, ...] = ("report", "flag", "delete")

# System fields every record has; the API sets them and rejects writes to them.
SYSTEM_FIELDS = ("Id", "IsDeleted", "CreatedDate", "CreatedById", "LastModifiedDate", "LastModifiedById", "SystemModstamp")


@dataclass(frozen=True)
class FieldDef:
    """One field of an object, with the attributes describe reports."""

    name: str
    label: str
    type: str
    length: int = 0
    precision: int = 0
    scale: int = 0
    required: bool = False
    external_id: bool = False
    unique: bool = False
    picklist_values: tuple[str, ...] = ()
    restricted_picklist: bool = False
    createable: bool = True
    updateable: bool = True
    custom: bool = True
    filterable: bool = True
    # The object a custom reference (lookup) field points to. A write to the field must name a live record of it.
    reference_to: str = ""

    @property
    def nillable(self) -> bool:
        # Checkbox fields are never null: an unset checkbox is false.
        return not self.required and self.type != BOOLEAN

    @property
    def max_integer_digits(self) -> int:
        return self.precision - self.scale


@dataclass(frozen=True)
class ObjectDef:
    """One sObject type: its API name, labels, key prefix and fields in describe order."""

    name: str
    label: str
    label_plural: str
    key_prefix: str
    fields: tuple[FieldDef, ...]
    custom: bool = True
    _by_lower_name: dict[str, FieldDef] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for field_def in self.fields:
            self._by_lower_name[field_def.name.lower()] = field_def

    def field(self, name: str) -> FieldDef | None:
        """Look a field up by API name; the API treats field names case-insensitively."""
        return self._by_lower_name.get(name.lower())

    @property
    def field_names(self) -> list[str]:
        return [field_def.name for field_def in self.fields]

    @property
    def unique_fields(self) -> list[FieldDef]:
        return [field_def for field_def in self.fields if field_def.unique]


def _system_fields(name_label: str) -> tuple[FieldDef, ...]:
    """Build the fields Salesforce adds to every custom object, where Name is a required Text(80)."""
    read_only = {"createable": False, "updateable": False, "custom": False}
    return (
        FieldDef("Id", "Record ID", ID, length=18, **read_only),
        FieldDef("IsDeleted", "Deleted", BOOLEAN, **read_only),
        FieldDef("Name", name_label, STRING, length=80, required=True, custom=False),
        FieldDef("CreatedDate", "Created Date", DATETIME, **read_only),
        FieldDef("CreatedById", "Created By ID", REFERENCE, length=18, **read_only),
        FieldDef("LastModifiedDate", "Last Modified Date", DATETIME, **read_only),
        FieldDef("LastModifiedById", "Last Modified By ID", REFERENCE, length=18, **read_only),
        FieldDef("SystemModstamp", "System Modstamp", DATETIME, **read_only),
    )


CUSTOMER_ACCOUNT = ObjectDef(
    name="Customer_Account__c",
    label="Customer Account",
    label_plural="Customer Accounts",
    key_prefix="a01",
    fields=(
        *_system_fields("Name"),
        FieldDef("External_Id__c", "External Id", STRING, length=20, external_id=True, unique=True),
        FieldDef("Email__c", "Email", EMAIL, length=80),
        FieldDef("Country__c", "Country", PICKLIST, length=255, picklist_values=COUNTRY_CODES, restricted_picklist=True),
        FieldDef("Tier__c", "Tier", PICKLIST, length=255, picklist_values=TIERS, restricted_picklist=True),
        FieldDef("Annual_Revenue__c", "Annual Revenue", CURRENCY, precision=16, scale=2),
        FieldDef("Employees__c", "Employees", DOUBLE, precision=9, scale=0),
        FieldDef("Is_Active__c", "Is Active", BOOLEAN),
        FieldDef("Signup_Date__c", "Signup Date", DATE),
        FieldDef("Last_Activity__c", "Last Activity", DATETIME),
        FieldDef("Notes__c", "Notes", TEXTAREA, length=255),
        # Set on records the source no longer has, when the reconciliation flags orphans.
        FieldDef("Missing_From_Source__c", "Missing From Source", BOOLEAN),
        # A lookup to another customer account, so that a write can refer to a deleted or missing record.
        FieldDef("Merged_Into__c", "Merged Into", REFERENCE, length=18, reference_to="Customer_Account__c"),
    ),
)

_COUNT = {"type": DOUBLE, "precision": 18, "scale": 0}

RECONCILIATION_RUN = ObjectDef(
    name="Reconciliation_Run__c",
    label="Reconciliation Run",
    label_plural="Reconciliation Runs",
    key_prefix="a02",
    fields=(
        *_system_fields("Name"),
        FieldDef("Run_Id__c", "Run Id", STRING, length=255, external_id=True, unique=True),
        FieldDef("Status__c", "Status", PICKLIST, length=255, picklist_values=RUN_STATUSES, restricted_picklist=True),
        FieldDef("Source_Read__c", "Source Read", **_COUNT),
        FieldDef("Target_Read__c", "Target Read", **_COUNT),
        FieldDef("Unchanged__c", "Unchanged", **_COUNT),
        FieldDef("Created__c", "Created", **_COUNT),
        FieldDef("Updated__c", "Updated", **_COUNT),
        FieldDef("Failed__c", "Failed", **_COUNT),
        FieldDef("Unprocessed__c", "Unprocessed", **_COUNT),
        FieldDef("Orphans__c", "Orphans", **_COUNT),
        FieldDef("Orphan_Action__c", "Orphan Action", PICKLIST, length=255, picklist_values=ORPHAN_ACTIONS, restricted_picklist=True),
        FieldDef("Orphans_Flagged__c", "Orphans Flagged", **_COUNT),
        FieldDef("Orphans_Deleted__c", "Orphans Deleted", **_COUNT),
        FieldDef("Orphans_Failed__c", "Orphans Failed", **_COUNT),
        FieldDef("Started_At__c", "Started At", DATETIME),
        FieldDef("Finished_At__c", "Finished At", DATETIME),
        # Long text areas cannot be filtered in SOQL WHERE clauses.
        FieldDef("Failures__c", "Failures", TEXTAREA, length=131072, filterable=False),
    ),
)

DEFAULT_OBJECTS: tuple[ObjectDef, ...] = (CUSTOMER_ACCOUNT, RECONCILIATION_RUN)
