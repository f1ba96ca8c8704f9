"""A comparable description of everything in one worker schema, read from the catalogs.

``snapshot(conn, schema)`` returns plain JSON-able data (dicts, lists, strings, numbers)
in a stable order, so two databases can be compared with ``==`` and a failure shown as
a text diff (``diff_snapshots``). Only things that legitimately differ between two
databases with the same schema are left out: OIDs, the migration timestamps and (by
default) the schema's own name, which is replaced by ``<S>`` wherever it appears in
deparsed SQL. Function bodies are not included: ours are our own text, and their
behaviour is tested differentially instead.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

__all__ = ["diff_snapshots", "snapshot"]

Row = dict[str, Any]
SCHEMA_TOKEN = "<S>"

_SCHEMA = """
select n.oid, pg_get_userbyid(n.nspowner) as owner, n.nspacl::text[] as acl,
       obj_description(n.oid, 'pg_namespace') as comment
from pg_namespace n
where n.nspname = %(schema)s
"""

_RELATIONS = """
select c.relname as name, c.relkind as kind, c.relrowsecurity as rls_enabled,
       c.relforcerowsecurity as rls_forced, c.relpersistence as persistence,
       c.reloptions as options, c.relacl::text[] as acl, c.relreplident as replica_identity,
       c.relispartition as is_partition, am.amname as access_method,
       pg_get_userbyid(c.relowner) as owner, obj_description(c.oid, 'pg_class') as comment
from pg_class c
left join pg_am am on am.oid = c.relam
where c.relnamespace = %(ns)s
"""

_COLUMNS = """
select c.relname as relation, a.attnum as position, a.attisdropped as dropped,
       case when a.attisdropped then null else a.attname end as name,
       case when a.attisdropped then null else format_type(a.atttypid, a.atttypmod) end as type,
       a.attnotnull as not_null,
       pg_get_expr(d.adbin, d.adrelid) as default_or_generation,
       a.attidentity as identity, a.attgenerated as generated,
       a.atthasmissing as has_missing, a.attmissingval::text as missing_value,
       coll.collname as collation, a.attacl::text[] as acl,
       col_description(c.oid, a.attnum) as comment
from pg_attribute a
join pg_class c on c.oid = a.attrelid
left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
left join pg_collation coll
       on coll.oid = a.attcollation and a.attcollation <> 0
      and a.attcollation <> (select t.typcollation from pg_type t where t.oid = a.atttypid)
where c.relnamespace = %(ns)s
  and c.relkind in ('r', 'p', 'v', 'm', 'f', 'c')
  and a.attnum > 0
"""

_CONSTRAINTS = """
select con.conname as name, con.contype as type,
       rel.relname as relation, typ.typname as domain,
       pg_get_constraintdef(con.oid, true) as definition,
       con.condeferrable as deferrable, con.condeferred as deferred,
       con.convalidated as validated, idx.relname as index,
       obj_description(con.oid, 'pg_constraint') as comment
from pg_constraint con
left join pg_class rel on rel.oid = con.conrelid
left join pg_type typ on typ.oid = con.contypid
left join pg_class idx on idx.oid = con.conindid
where con.connamespace = %(ns)s
"""

_INDEXES = """
select ic.relname as name, tc.relname as relation,
       pg_get_indexdef(i.indexrelid) as definition,
       i.indisunique as is_unique, i.indisprimary as is_primary,
       i.indisexclusion as is_exclusion, i.indimmediate as immediate,
       i.indisvalid as is_valid, i.indisready as is_ready, i.indislive as is_live,
       i.indisclustered as is_clustered, i.indisreplident as is_replica_identity,
       i.indnullsnotdistinct as nulls_not_distinct
from pg_index i
join pg_class ic on ic.oid = i.indexrelid
join pg_class tc on tc.oid = i.indrelid
where ic.relnamespace = %(ns)s
"""

_SEQUENCES = """
select c.relname as name, format_type(s.seqtypid, null) as type,
       s.seqstart as start, s.seqincrement as increment, s.seqmin as min, s.seqmax as max,
       s.seqcache as cache, s.seqcycle as cycle, ps.last_value,
       (select dep.deptype::text || ':' || owner_rel.relname || '.' || owner_att.attname
          from pg_depend dep
          join pg_class owner_rel on owner_rel.oid = dep.refobjid
          join pg_attribute owner_att
            on owner_att.attrelid = dep.refobjid and owner_att.attnum = dep.refobjsubid
         where dep.classid = 'pg_class'::regclass and dep.objid = c.oid
           and dep.refclassid = 'pg_class'::regclass and dep.deptype in ('a', 'i')
       ) as owned_by
from pg_sequence s
join pg_class c on c.oid = s.seqrelid
left join pg_sequences ps on ps.schemaname = %(schema)s and ps.sequencename = c.relname
where c.relnamespace = %(ns)s
"""

_TYPES = """
select t.typname as name, t.typtype as type, t.typcategory as category,
       rel.relkind as relation_kind, elem.typname as element, arr.typname as array_type,
       case when t.typbasetype <> 0 then format_type(t.typbasetype, t.typtypmod) end as base_type,
       t.typnotnull as not_null, t.typdefault as default,
       (select array_agg(e.enumlabel order by e.enumsortorder)
          from pg_enum e where e.enumtypid = t.oid) as enum_labels,
       t.typacl::text[] as acl, obj_description(t.oid, 'pg_type') as comment
from pg_type t
left join pg_class rel on rel.oid = t.typrelid
left join pg_type elem on elem.oid = t.typelem
left join pg_type arr on arr.oid = t.typarray
where t.typnamespace = %(ns)s
"""

_VIEWS = """
select c.relname as name, c.relkind as kind, pg_get_viewdef(c.oid, true) as definition
from pg_class c
where c.relnamespace = %(ns)s and c.relkind in ('v', 'm')
"""

_TRIGGERS = """
select t.tgname as name, c.relname as relation, pg_get_triggerdef(t.oid, true) as definition,
       t.tgenabled as enabled
from pg_trigger t
join pg_class c on c.oid = t.tgrelid
where c.relnamespace = %(ns)s and not t.tgisinternal
"""

_FUNCTIONS = """
select p.proname as name, p.prokind as kind,
       pg_get_function_identity_arguments(p.oid) as identity_arguments,
       pg_get_function_arguments(p.oid) as arguments,
       pg_get_function_result(p.oid) as result,
       l.lanname as language, p.proisstrict as strict, p.provolatile as volatility,
       p.prosecdef as security_definer, p.proretset as returns_set,
       p.proparallel as parallel, p.proleakproof as leakproof,
       p.procost::float8 as cost, p.prorows::float8 as rows,
       p.proconfig as config, p.proacl::text[] as acl,
       pg_get_userbyid(p.proowner) as owner, obj_description(p.oid, 'pg_proc') as comment
from pg_proc p
join pg_language l on l.oid = p.prolang
where p.pronamespace = %(ns)s
"""

_POLICIES = """
select pol.polname as name, c.relname as relation, pol.polcmd as command,
       pol.polpermissive as permissive,
       array(select case when r = 0 then 'public' else pg_get_userbyid(r) end
               from unnest(pol.polroles) as r order by 1) as roles,
       pg_get_expr(pol.polqual, pol.polrelid) as using_expression,
       pg_get_expr(pol.polwithcheck, pol.polrelid) as check_expression
from pg_policy pol
join pg_class c on c.oid = pol.polrelid
where c.relnamespace = %(ns)s
"""

_RULES = """
select r.rulename as name, c.relname as relation, pg_get_ruledef(r.oid, true) as definition
from pg_rewrite r
join pg_class c on c.oid = r.ev_class
where c.relnamespace = %(ns)s and r.rulename <> '_RETURN'
"""

_PUBLIC_OBJECTS = """
select 'relation' as kind, c.relname as name from pg_class c
 where c.relnamespace = 'public'::regnamespace
union all
select 'function', p.proname from pg_proc p where p.pronamespace = 'public'::regnamespace
union all
select 'type', t.typname from pg_type t where t.typnamespace = 'public'::regnamespace
"""


def snapshot(
    conn: psycopg.Connection[Any], schema: str, *, normalise_schema: bool = True
) -> dict[str, Any]:
    """Describe every object in ``schema`` (see the module docstring).

    With ``normalise_schema`` (the default) every schema-qualified reference to
    ``schema`` in deparsed SQL reads ``<S>.`` so that schemas of different names
    compare equal when their contents are the same.
    """
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(_SCHEMA, {"schema": schema})
        namespace = cur.fetchone()
        if namespace is None:
            return {"schema": None}
        params = {"ns": namespace.pop("oid"), "schema": schema}
        cur.execute("select quote_ident(%s) as q", (schema,))
        quoted_row = cur.fetchone()
        assert quoted_row is not None
        replacements = {quoted_row["q"] + ".": SCHEMA_TOKEN + "."} if normalise_schema else {}

        def fetch(query: str, *keys: str) -> list[Row]:
            cur.execute(query, params)
            rows = [_normalise(row, replacements) for row in cur.fetchall()]
            return sorted(rows, key=lambda row: tuple(_sort_key(row[key]) for key in keys))

        relations = fetch(_RELATIONS, "name")
        result: dict[str, Any] = {
            "schema": namespace,
            "tables": [r for r in relations if r["kind"] in ("r", "p", "f")],
            "views": fetch(_VIEWS, "name"),
            "composite_types": [r for r in relations if r["kind"] == "c"],
            "sequences": fetch(_SEQUENCES, "name"),
            "index_relations": [r for r in relations if r["kind"] in ("i", "I")],
            "other_relations": [
                r
                for r in relations
                if r["kind"] not in ("r", "p", "f", "v", "m", "c", "S", "i", "I")
            ],
            "columns": fetch(_COLUMNS, "relation", "position"),
            "constraints": fetch(_CONSTRAINTS, "relation", "domain", "name"),
            "indexes": fetch(_INDEXES, "relation", "name"),
            "types": fetch(_TYPES, "name"),
            "triggers": fetch(_TRIGGERS, "relation", "name"),
            "functions": fetch(_FUNCTIONS, "name", "identity_arguments"),
            "policies": fetch(_POLICIES, "relation", "name"),
            "rules": fetch(_RULES, "relation", "name"),
            "migrations": _migrations(conn, schema, relations),
        }
        # Sequence relations carry ACLs and owners like any relation.
        seq_relations = {r["name"]: r for r in relations if r["kind"] == "S"}
        for seq in result["sequences"]:
            seq["relation"] = seq_relations.get(seq["name"])
        cur.execute(_PUBLIC_OBJECTS)
        result["public_schema_objects"] = sorted(
            f"{row['kind']}:{row['name']}" for row in cur.fetchall()
        )
    return result


def _migrations(conn: psycopg.Connection[Any], schema: str, relations: Sequence[Row]) -> Any:
    """The (id, breaking) rows of the migrations table, without timestamps."""
    if not any(r["name"] == "migrations" and r["kind"] == "r" for r in relations):
        return None
    table = sql.SQL("{}.migrations").format(sql.Identifier(schema))
    with conn.cursor() as cur:
        cur.execute(
            "select 1 from pg_attribute where attrelid = %s::regclass"
            " and attname = 'breaking' and not attisdropped",
            (table.as_string(conn),),
        )
        has_breaking = cur.fetchone() is not None
        column = sql.SQL("breaking") if has_breaking else sql.SQL("null::boolean")
        cur.execute(sql.SQL("select id, {} from {} order by id").format(column, table))
        return [[row[0], row[1]] for row in cur.fetchall()]


def _normalise(value: Any, replacements: dict[str, str]) -> Any:
    """Make a catalog value JSON-able and replace the schema name in strings."""
    if isinstance(value, dict):
        return {key: _normalise(item, replacements) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_normalise(item, replacements) for item in value]
    if isinstance(value, str):
        for old, new in replacements.items():
            value = value.replace(old, new)
        return value
    if value is None or isinstance(value, bool | int | float):
        return value
    return str(value)


def _sort_key(value: Any) -> tuple[int, Any]:
    """Sort None first, then by value (all values of one key share a type)."""
    return (0, "") if value is None else (1, value)


def diff_snapshots(
    expected: dict[str, Any],
    actual: dict[str, Any],
    *,
    labels: tuple[str, str] = ("expected", "actual"),
) -> str:
    """A unified diff of two snapshots, empty when they are equal."""
    left = json.dumps(expected, indent=1, sort_keys=True).splitlines()
    right = json.dumps(actual, indent=1, sort_keys=True).splitlines()
    return "\n".join(difflib.unified_diff(left, right, labels[0], labels[1], lineterm="", n=6))
