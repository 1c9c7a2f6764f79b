"""Class ids, names and synonyms -> model rows: the rules of the Swift engine's ClassCatalog
(checkpoints/README.md, "Classes and label spaces"), so `sample.py --class` reads what `rind sample
--class` and the API read.

A model may declare `classes.label_space` {"name", "ids", "table"}: class k is id ids[k] of that space
and the table (a file in the checkpoint folder: id, wnid, name, synonyms) lists the whole space.
Without one, ids are rows. Names and synonyms match case-insensitively with `_` read as a space.
"""

from __future__ import annotations

import os


class ClassLookupError(ValueError):
    """A class given as text that names none of the model's classes; the message says why."""


def normalize(text: str) -> str:
    return " ".join(text.lower().replace("_", " ").split())


def read_table(path: str) -> dict[int, tuple[str, list[str]]]:
    """id -> (name, synonyms) of a label-space table."""
    labels = {}
    with open(path, encoding="utf-8") as handle:
        handle.readline()
        for number, line in enumerate(handle, start=2):
            if not line.strip():
                continue
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 3 or not fields[0].isdigit():
                raise ValueError(f"{path}: line {number}: expected 'id<TAB>wnid<TAB>name<TAB>synonyms'")
            name = fields[2].strip()
            synonyms = [w.strip() for w in fields[3].split(",") if w.strip()] if len(fields) > 3 else []
            if name and name not in synonyms:
                synonyms.insert(0, name)
            labels[int(fields[0])] = (name, synonyms)
    return labels


class ClassCatalog:
    def __init__(self, cfg, model_name: str, table_dir: str | None = None):
        self.model_name = model_name
        space = cfg.label_space
        self.space_name = space["name"] if space else None
        self.ids = list(space["ids"]) if space else list(range(cfg.num_classes))
        labels = {}
        if space and space.get("table") and table_dir:
            labels = read_table(os.path.join(table_dir, space["table"]))
        for row, identifier in enumerate(self.ids):
            name = cfg.class_names[row] if cfg.class_names else labels.get(identifier, (None, []))[0]
            synonyms = list(labels.get(identifier, (None, []))[1])
            if name and name not in synonyms:
                synonyms.insert(0, name)
            labels[identifier] = (name, synonyms)
        self.labels = labels
        self.row_of = {identifier: row for row, identifier in enumerate(self.ids)}

    @property
    def space_title(self):
        if self.space_name is None:
            return None
        return "ImageNet" if self.space_name.lower().startswith("imagenet") else self.space_name

    def resolve(self, text: str) -> int:
        raw = text.strip()
        hint = "the model's classes are listed by GET /models"
        count = len(self.ids)
        if count == 0:
            raise ClassLookupError(f"model '{self.model_name}' is unconditional and takes no class (got '{raw}')")
        try:
            identifier = int(raw)
        except ValueError:
            identifier = None
        if identifier is not None:
            if identifier in self.row_of:
                return self.row_of[identifier]
            if self.space_name is None:
                raise ClassLookupError(f"class {identifier} is out of range: model '{self.model_name}' has classes 0...{count - 1}")
            if identifier in self.labels:
                name = self.labels[identifier][0]
                raise ClassLookupError(f"{self.space_title} class {identifier}" + (f" ({name})" if name else "")
                                       + f" is not one of the {count} classes of model '{self.model_name}'; {hint}")
            raise ClassLookupError(f"{self.space_title} has no class {identifier}; model '{self.model_name}' has "
                                   f"{count} classes; {hint}")
        key = normalize(raw)
        matches = sorted(i for i, (_, synonyms) in self.labels.items() if any(normalize(w) == key for w in synonyms))
        if len(matches) > 1:
            parts = []
            for i in matches:
                name, synonyms = self.labels[i]
                words = [w for w in synonyms if w != name]
                parts.append(f"{i} ({name}" + (f" [{', '.join(words)}]" if words else "")
                             + ("" if i in self.row_of else ", not in this model") + ")")
            where = f" in {self.space_title}" if self.space_title else ""
            raise ClassLookupError(f"class '{raw}' is ambiguous{where}: it names {' or '.join(parts)}; give the id")
        if matches:
            i = matches[0]
            if i in self.row_of:
                return self.row_of[i]
            name = self.labels[i][0]
            raise ClassLookupError(f"{self.space_title} class {i} ({name}) is not one of the {count} classes of model "
                                   f"'{self.model_name}'; {hint}")
        examples = [self.labels[i][0] for i in self.ids[:5] if self.labels[i][0]]
        some = f" (for example {', '.join(examples)})" if examples else ""
        raise ClassLookupError(f"unknown class '{raw}': model '{self.model_name}' takes one of its {count} class ids "
                               f"or names{some}; {hint}")
