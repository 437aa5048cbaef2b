"""Documents made in the tests: PDFs written by hand, encrypted PDFs (pypdf, RC4, which needs no
extra package), Word documents (python-docx), and an HTML page shaped like the PostgreSQL manual.
Shared by the loader tests and the SQL loading and ingest tests."""

from __future__ import annotations

import io


def make_pdf(pages: list[list[str]], title: str | None = None) -> bytes:
    """A PDF with one page per list and one Helvetica text line per string."""
    objects = ["<< /Type /Catalog /Pages 2 0 R >>", "",
               "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    kids = []
    for lines in pages:
        shown = [line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
                 for line in lines]
        stream = "\n".join(["BT /F1 12 Tf 14 TL 72 720 Td", *(f"({s}) Tj T*" for s in shown),
                            "ET"])
        objects.append(f"<< /Length {len(stream)} >>\nstream\n{stream}\nendstream")
        objects.append("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources "
                       f"<< /Font << /F1 3 0 R >> >> /Contents {len(objects)} 0 R >>")
        kids.append(f"{len(objects)} 0 R")
    objects[1] = f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {len(kids)} >>"
    info = ""
    if title is not None:
        objects.append(f"<< /Title ({title}) >>")
        info = f" /Info {len(objects)} 0 R"
    out = io.BytesIO(b"%PDF-1.4\n")
    out.seek(0, io.SEEK_END)
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(f"{number} 0 obj\n{body}\nendobj\n".encode("latin-1"))
    xref = out.tell()
    out.write(f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode())
    out.write("".join(f"{offset:010d} 00000 n \n" for offset in offsets).encode())
    out.write(f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R{info} >>\n"
              f"startxref\n{xref}\n%%EOF\n".encode())
    return out.getvalue()


def encrypt_pdf(pdf: bytes, user_password: str) -> bytes:
    import pypdf

    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(pdf)))
    writer.encrypt(user_password=user_password, owner_password="owner", algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def make_docx(title: str = "") -> bytes:
    """A Word document with a title, headings, nested lists, a table and a line break."""
    import docx

    document = docx.Document()
    document.core_properties.title = title
    document.add_heading("Install", 0)
    document.add_heading("Debian", 1)
    document.add_paragraph("Run apt-get install postgresql.")
    document.add_paragraph("first bullet", style="List Bullet")
    document.add_paragraph("nested bullet", style="List Bullet 2")
    document.add_paragraph("numbered step", style="List Number")
    table = document.add_table(rows=2, cols=2)
    for (row, col), text in {(0, 0): "Name", (0, 1): "Type", (1, 0): "id",
                             (1, 1): "integer"}.items():
        table.cell(row, col).text = text
    document.add_heading("pgvector", 2)
    document.add_paragraph("Build it from source.\nThen CREATE EXTENSION vector.")
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


GUIDE_PDF_TEXT = "Install guide\nFirst (page) line.\n\nSecond page text."

PAGE = """<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<!DOCTYPE html>
<html><head><meta charset="utf-8" /><title>CREATE
   INDEX</title>
<style>body { color: red }</style><script>var nav = "Prev";</script></head>
<body>
<div class="navheader"><table><tr><th>Prev</th><td><a href="up.html">Up</a></td></tr></table>
<div>nested header div</div></div>
<nav><a href="/">Home</a></nav>
<h1>Create   an index</h1>
<p>An index makes
   lookups fast &amp; cheap&nbsp;&lt;usually&gt;.<br/>Second line.</p>
<h2>Options</h2>
<ul><li>UNIQUE</li><li>CONCURRENTLY</li></ul>
<table><tr><th>Name</th><th>Type</th></tr><tr><td>id</td><td>integer</td></tr></table>
<pre>
CREATE INDEX idx ON t (col);

    -- indented &amp; kept
</pre>
<dl><dt>name</dt><dd>The index name.</dd></dl>
<div class="navfooter"><a href="next.html">Next</a></div>
</body></html>
"""
