"""More first names for ``ioi-mini``, beyond ``words.IOI_NAMES_TRAIN`` and ``words.IOI_NAMES_HELDOUT`` (plain data)."""

MORE_NAMES = """
Aaron Abigail Adele Adrian Agatha Aidan Alan Alec Alfred Alma Alvin Amber Andre Andrew Angela Anita Anton April Arlo
Astrid Audrey Austin Axel Barbara Barry Basil Beatrice Benny Bernard Bianca Blake Bonnie Brenda Brian Bruce Bruno
Caleb Calvin Camila Carol Caroline Cecil Cedric Celia Chad Charles Chloe Cindy Clark Claude Clive Connor Cora Craig
Cyril Dale Damian Dana Daphne Darren Dean Denise Derek Dexter Dolly Donald Doris Douglas Duncan Dustin Edith Edna
Edwin Eileen Elaine Eliza Elliot Elsa Elton Emil Enid Erin Ernest Eva Evan Ezra Faith Felicity Fern Floyd Frances
Freya Gavin Gemma Gerald Gilbert Gina Gloria Gordon Greta Gwen Harold Harriet Harvey Heidi Hector Herbert Hope Howard
Hugh Ida Igor Imogen Ingrid Iris Isla Ivy Jacob Jasper Jean Jenna Jeremy Jerome Jesse Joel Jonah Joyce Judith Julian
June Justin Kara Karen Kay Keira Kirk Kurt Lance Larry Laurel Lauren Leah Leon Leslie Lewis Lionel Lois Lorna Louis
Lydia Lyle Mabel Maggie Malcolm Marcus Margot Marion Marsha Marvin Matilda Maud Maurice Maxine Megan Melvin Mia Milo
Mina Miriam Molly Monica Morgan Muriel Myra Nadia Nathan Neil Nelson Nigel Noah Noel Norman Olga Oliver Opal Orson
Pablo Patrick Pearl Penny Percy Phoebe Phyllis Piper Quentin Rafael Ramona Raymond Reed Regina Rex Rhoda Rita Robin
Roger Roland Ronald Rosa Ross Roy Rufus Russell Ruby Sabrina Sally Sandra Scott Selma Seth Sheila Shirley Sidney Silas
Sonia Stanley Stefan Stuart Sybil Sylvia Tamara Tessa Thea Theo Tobias Todd Trevor Troy Tyler Una Valerie Vernon
Viola Wade Wallace Warren Wayne Willa Willis Wilma Winston Wyatt Yara Yvonne Zachary Zelda Zora
""".split()
