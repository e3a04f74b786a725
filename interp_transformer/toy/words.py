"""Word lists for the embedded models' vocabularies (plain data)."""

COMMON_WORDS = """
the of and to in is was he for it with as his on be at by had are but from or have an they which one you were
her all she there would their we him been has when who will more no if out so said what up its about into than
them can only other new some could time these two may then do first any my now such like our over man me even
most made after also did many before must through back years where much your way well down should because each
just those people how too little state good very make world still own see men work long get here between both
life being under never day same another know while last might us great old year off come since against go came
right used take three house use during without again place around however home small found part once general
high upon school every next nothing book thing city light water night eye fire door hand word river tree music
garden window stone paper table river cold warm green blue red black white bright quiet loud fast slow open close
king queen horse bird fish dog cat apple bread milk salt sugar train ship road bridge castle tower forest island
mountain valley ocean desert cloud storm rain snow wind summer winter spring autumn morning evening letter story
song dance game ball card chair glass metal wood gold silver iron copper coin market field farm village street
""".split()
COMMON_WORDS = list(dict.fromkeys(COMMON_WORDS))  # keep first occurrences, drop repeats

IOI_NAMES_TRAIN = """
Mary John Alice Bob Sarah James Emma David Laura Michael Anna Daniel Julia Thomas Grace Peter Rachel Paul Lucy
Mark Helen George Kate Henry Claire Adam Sophie Jack Ellen Simon Rose Victor Nina Oscar Irene Frank Diana Leo
Amy Ben Carl Dora Eric Fiona Gary Holly Ian Jane Kevin Linda Mike Nora Owen Pam Quinn Ruth Sam Tina Umar Vicky
Walter Xena Yusuf Zoe Arthur Beth Colin Daisy Ethan Flora Glen Hazel Isaac Joan Keith Lena Miles Naomi Otto Paula
Ralph Stella Tom Ursula Vince Wendy Albert Bella Chris Della Edgar Fay Gus Hilda Ivan Jill Karl Lily Max Nell
""".split()
IOI_NAMES_HELDOUT = "Hannah Samuel Olivia Martin Clara Edward Vera Felix Maria Hugo Agnes Boris Carmen Dylan Esther".split()
IOI_PLACES = "store park school garden station library beach market office museum restaurant hospital".split()
IOI_OBJECTS = "drink book ring letter gift ball key cake bag flower snack pen".split()
