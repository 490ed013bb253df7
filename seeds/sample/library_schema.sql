-- Schema and common queries for a small lending library.

CREATE TABLE members (
    member_id   INTEGER PRIMARY KEY,
    full_name   TEXT NOT NULL,
    email       TEXT UNIQUE,
    joined_on   DATE NOT NULL DEFAULT CURRENT_DATE
);

CREATE TABLE books (
    book_id     INTEGER PRIMARY KEY,
    title       TEXT NOT NULL,
    author      TEXT NOT NULL,
    isbn        TEXT UNIQUE,
    copies      INTEGER NOT NULL CHECK (copies >= 0)
);

CREATE TABLE loans (
    loan_id     INTEGER PRIMARY KEY,
    book_id     INTEGER NOT NULL REFERENCES books(book_id),
    member_id   INTEGER NOT NULL REFERENCES members(member_id),
    loaned_on   DATE NOT NULL,
    due_on      DATE NOT NULL,
    returned_on DATE
);

-- Books currently on loan, with the borrower and how many days overdue (0 if not yet due).
SELECT b.title, m.full_name, l.due_on,
       MAX(0, julianday('now') - julianday(l.due_on)) AS days_overdue
FROM loans AS l
JOIN books AS b ON b.book_id = l.book_id
JOIN members AS m ON m.member_id = l.member_id
WHERE l.returned_on IS NULL
ORDER BY days_overdue DESC;

-- Copies still available for each book.
SELECT b.title,
       b.copies - COUNT(l.loan_id) AS available
FROM books AS b
LEFT JOIN loans AS l ON l.book_id = b.book_id AND l.returned_on IS NULL
GROUP BY b.book_id;

-- The ten most borrowed authors in the last year.
SELECT b.author, COUNT(*) AS loans_last_year
FROM loans AS l
JOIN books AS b ON b.book_id = l.book_id
WHERE l.loaned_on >= date('now', '-1 year')
GROUP BY b.author
ORDER BY loans_last_year DESC
LIMIT 10;
